"""What the Python package's tests share: where things are, run configs in a temporary folder,
and peers started as processes, every wait bounded."""
import os
import subprocess
import sys
import tempfile

ROOT = os.environ.get("GOSSIP_SOURCE_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
GOSSIP = os.environ.get("GOSSIP_EXE", os.path.join(ROOT, "build", "src", "gossip"))
PYTHON = sys.executable  # Meson's find_installation(): Debian's /usr/bin/python3
HERE = os.path.dirname(os.path.abspath(__file__))


def skip(why):
    """Exit 77: Meson reports the test as skipped, with the reason in its log."""
    print(f"SKIP: {why}")
    sys.exit(77)


def scratch():
    return tempfile.TemporaryDirectory(prefix="gossip-py-")


def write_config(folder, topology, name="t", algorithm=None, codec="identity", timeout_s=20,
                 extra="", algorithm_keys=""):
    """A run config for Python peers: no [model] or [data]. `topology` may hold {ipc}, replaced
    by an ipc:// endpoint pattern inside `folder`, so that parallel tests never share a port."""
    topology = topology.replace("{ipc}", f"endpoint=ipc://{folder}/peer-{{rank}}.sock")
    text = f"""[run]
name = "{name}"
output = "{folder}/run"
seed = 7
log_every = 5
[topology]
file = "{topology}"
[algorithm]
name = "{algorithm or 'dpsgd'}"
lr = 0.1
{algorithm_keys}
[compression]
codec = "{codec}"
[transport]
timeout_s = {timeout_s}
connect_timeout_s = 30
{extra}"""
    path = os.path.join(folder, f"{name}.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def launch(config, argv, timeout=120, sets=()):
    """`gossip launch --config CONFIG -- ARGV...`; returns the CompletedProcess (output captured)."""
    cmd = [GOSSIP, "launch", "--config", config]
    for s in sets:
        cmd += ["--set", s]
    cmd += ["--"] + list(argv)
    env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def require(cond, message):
    if not cond:
        print(f"FAIL: {message}", file=sys.stderr)
        sys.exit(1)
