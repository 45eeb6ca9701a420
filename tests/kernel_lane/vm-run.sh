#!/bin/sh
# Runs inside the kernel lane's VM (started by its init, tests/kernel_lane/init): each case of the job share
# (/job/cases/<name>/script.sh, in name order) with its own directory as working directory; its exit code,
# stdout and stderr land beside it (rc, stdout, stderr), then the VM powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
cut -d' ' -f1 /proc/uptime > /job/uptime-start
for module in $(cat /job/modules 2>/dev/null); do
    modprobe "$module" || echo "kernel-lane: modprobe $module failed" >&2
done
uname -r > /job/kernel-release
cut -d' ' -f1 /proc/uptime > /job/uptime-modules
for case in /job/cases/*/; do
    (cd "$case" && timeout "$(cat /job/case-timeout)" sh ./script.sh >stdout 2>stderr; echo $? > rc.tmp && mv rc.tmp rc)
done
cut -d' ' -f1 /proc/uptime > /job/uptime-end
sync
echo o > /proc/sysrq-trigger
sleep 30
