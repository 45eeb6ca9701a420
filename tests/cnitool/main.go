// Command cnitool is the test suite's runtime driver: a cnitool-compatible CLI
// built against libcni 1.1.2 (Debian's golang-github-appc-cni-dev), so tests
// exercise our plugins through the same code path a real runtime uses
// (config loading, request building, prevResult chaining, result cache).
//
// Usage: cnitool add|check|del <net> <netns>
//
//	cnitool version <net>
//
// Environment (as upstream cnitool): NETCONFPATH (default /etc/cni/net.d),
// CNI_PATH, CNI_ARGS ("K=V;K2=V2"), CAP_ARGS (JSON object), CNI_IFNAME
// (default eth0). Additions for tests: CNI_CACHE_DIR (libcni cache dir, so
// tests never touch /var/lib/cni) and CNI_CONTAINERID (overrides the ID that
// is otherwise derived from the netns path, like upstream).
//
// Output: add prints the result JSON; version prints the plugin info JSON.
// On failure the error is printed to stdout as JSON
// {"code":N,"msg":...,"details":...,"error":"<full message>"} (code/msg/details
// only when libcni surfaced a *types.Error) and the exit status is 1.
package main

import (
	"context"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

const usage = "usage: cnitool add|check|del <net> <netns> | cnitool version <net>"

func main() {
	if err := run(os.Args[1:]); err != nil {
		printError(err)
		os.Exit(1)
	}
}

func run(argv []string) error {
	if len(argv) < 2 {
		return errors.New(usage)
	}
	cmd, netName := argv[0], argv[1]

	confDir := envOr("NETCONFPATH", "/etc/cni/net.d")
	list, err := libcni.LoadConfList(confDir, netName)
	if err != nil {
		return fmt.Errorf("failed to load network %q from %s: %w", netName, confDir, err)
	}
	cniConfig := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(os.Getenv("CNI_PATH")), os.Getenv("CNI_CACHE_DIR"), nil)
	ctx := context.Background()

	if cmd == "version" {
		return printVersion(ctx, cniConfig, list)
	}
	if len(argv) != 3 {
		return errors.New(usage)
	}
	rt, err := runtimeConf(argv[2])
	if err != nil {
		return err
	}

	switch cmd {
	case "add":
		result, err := cniConfig.AddNetworkList(ctx, list, rt)
		if err != nil {
			return err
		}
		return result.Print()
	case "check":
		return cniConfig.CheckNetworkList(ctx, list, rt)
	case "del":
		return cniConfig.DelNetworkList(ctx, list, rt)
	}
	return fmt.Errorf("unknown command %q; %s", cmd, usage)
}

// runtimeConf builds libcni's RuntimeConf from the netns argument and the env.
// A bare name (no slash) means /run/netns/<name>, as made by `ip netns add`.
func runtimeConf(netns string) (*libcni.RuntimeConf, error) {
	if !strings.Contains(netns, "/") {
		netns = filepath.Join("/run/netns", netns)
	}
	netns, err := filepath.Abs(netns)
	if err != nil {
		return nil, fmt.Errorf("bad netns path %q: %w", netns, err)
	}

	var capArgs map[string]interface{}
	if raw := os.Getenv("CAP_ARGS"); raw != "" {
		if err := json.Unmarshal([]byte(raw), &capArgs); err != nil {
			return nil, fmt.Errorf("CAP_ARGS is not a JSON object: %w", err)
		}
	}

	var cniArgs [][2]string
	if raw := os.Getenv("CNI_ARGS"); raw != "" {
		for _, pair := range strings.Split(raw, ";") {
			kv := strings.SplitN(pair, "=", 2)
			if len(kv) != 2 {
				return nil, fmt.Errorf("CNI_ARGS pair %q is not K=V", pair)
			}
			cniArgs = append(cniArgs, [2]string{kv[0], kv[1]})
		}
	}

	containerID := os.Getenv("CNI_CONTAINERID")
	if containerID == "" {
		// Same derivation as upstream cnitool: stable per netns path.
		containerID = fmt.Sprintf("cnitool-%x", sha512.Sum512([]byte(netns)))[:20]
	}

	return &libcni.RuntimeConf{
		ContainerID:    containerID,
		NetNS:          netns,
		IfName:         envOr("CNI_IFNAME", "eth0"),
		Args:           cniArgs,
		CapabilityArgs: capArgs,
	}, nil
}

// printVersion answers `version <net>` with GetVersionInfo of the first plugin,
// since libcni 1.1.2 has no STATUS/GC to probe a plugin with.
func printVersion(ctx context.Context, c *libcni.CNIConfig, list *libcni.NetworkConfigList) error {
	if len(list.Plugins) == 0 {
		return fmt.Errorf("network %q has no plugins", list.Name)
	}
	info, err := c.GetVersionInfo(ctx, list.Plugins[0].Network.Type)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]interface{}{
		"type":              list.Plugins[0].Network.Type,
		"supportedVersions": info.SupportedVersions(),
	})
}

// printError writes the failure as JSON on stdout (so tests can read the CNI
// code through libcni's wrapping) and as text on stderr.
func printError(err error) {
	out := map[string]interface{}{"error": err.Error()}
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		out["code"] = cniErr.Code
		out["msg"] = cniErr.Msg
		out["details"] = cniErr.Details
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
	fmt.Fprintln(os.Stderr, "cnitool:", err)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
