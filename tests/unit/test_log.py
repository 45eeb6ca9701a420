"""The light logger: levels, stderr plus optional file, never stdout."""

import io

from cni_common import log


def test_levels_and_file(tmp_path, capsys):
    err = io.StringIO()
    log_file = tmp_path / "plugin.log"
    log.configure("info", str(log_file), err)
    logger = log.get_logger("bridge")
    logger.debug("hidden %s", 1)
    logger.info("shown %s", "x")
    assert "shown x" in err.getvalue() and "hidden" not in err.getvalue()
    assert "bridge[" in log_file.read_text() and " INFO shown x" in log_file.read_text()
    assert capsys.readouterr().out == ""
    log.configure()


def test_unknown_level_means_warning():
    err = io.StringIO()
    log.configure("chatty", "", err)
    log.get_logger("x").info("no")
    log.get_logger("x").warning("yes")
    assert "no" not in err.getvalue() and "WARNING yes" in err.getvalue()
    log.configure()


def test_unwritable_log_file_is_reported_not_fatal(tmp_path):
    err = io.StringIO()
    log.configure("warning", str(tmp_path / "missing-dir" / "x.log"), err)
    log.get_logger("x").error("still logged")
    assert "cannot open logFile" in err.getvalue() and "still logged" in err.getvalue()
    log.configure()
