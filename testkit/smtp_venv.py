"""Installs the test SMTP server's Python packages, once per machine.

Run it with the Python to build on (RETL_TEST_PYTHON, else python3):
`python3 testkit/smtp_venv.py`. It prints, as one line of JSON, how to run
testkit/smtp_server.py: {"python": PATH, "pythonpath": PATH or null}.
Progress and errors go to stderr. scripts/test runs it before the tests (so
that a failing pip is one clear message), and testkit/src/smtp/python.rs
runs it from the tests (so that `cargo test` alone works too).

The packages are the ones testkit/smtp-requirements.txt pins, from PyPI,
in a venv cached outside the clone: $RETL_PYTHON_CACHE, else
$XDG_CACHE_HOME/retl/python, else ~/.cache/retl/python, one folder per
requirements file and Python version (aiosmtpd-1.4.6-py3.11.7-<hash>).
Concurrent runs wait on a lock file, so the install happens once; a folder
counts only once its .complete marker is written, so an install killed
halfway is done again. Where this Python cannot make a venv (Debian without
python3-venv), the packages go to <folder>/lib with pip install --target.
"""

import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REQUIREMENTS = os.path.join(HERE, "smtp-requirements.txt")
PIP = ["-m", "pip", "install", "--disable-pip-version-check", "--no-input",
       "--quiet", "-r", REQUIREMENTS]


def cache_root():
    if os.environ.get("RETL_PYTHON_CACHE"):
        return os.environ["RETL_PYTHON_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache")
    return os.path.join(base, "retl", "python")


def say(text):
    print(f"smtp_venv: {text}", file=sys.stderr, flush=True)


def install(folder, version):
    shutil.rmtree(folder, ignore_errors=True)
    say(f"installing aiosmtpd {version} into {folder} (once per machine) ...")
    started = time.monotonic()
    venv = subprocess.run([sys.executable, "-m", "venv", folder],
                          stderr=subprocess.PIPE, text=True)
    if venv.returncode == 0:
        python = os.path.join(folder, "bin", "python")
        subprocess.run([python, *PIP], check=True)
        found = {"python": python, "pythonpath": None}
    else:
        say(f"{sys.executable} -m venv failed ({venv.stderr.strip()}); "
            "using pip install --target instead")
        shutil.rmtree(folder, ignore_errors=True)
        lib = os.path.join(folder, "lib")
        subprocess.run([sys.executable, *PIP, "--target", lib], check=True)
        found = {"python": sys.executable, "pythonpath": lib}
    env = dict(os.environ)
    if found["pythonpath"]:
        env["PYTHONPATH"] = found["pythonpath"]
    got = subprocess.run(
        [found["python"], "-c", "import aiosmtpd; print(aiosmtpd.__version__)"],
        check=True, env=env, stdout=subprocess.PIPE, text=True).stdout.strip()
    if got != version:
        raise RuntimeError(f"aiosmtpd {got} was installed, not {version}")
    say(f"installed aiosmtpd {version} in {time.monotonic() - started:.0f} s")
    return found


def main():
    with open(REQUIREMENTS, "rb") as f:
        requirements = f.read()
    pinned = re.search(rb"^aiosmtpd==(\S+)", requirements, re.M)
    if not pinned:
        raise RuntimeError(f"{REQUIREMENTS} pins no aiosmtpd version")
    version = pinned.group(1).decode()
    digest = hashlib.sha256(requirements).hexdigest()[:8]
    root = cache_root()
    folder = os.path.join(
        root, f"aiosmtpd-{version}-py{platform.python_version()}-{digest}")
    marker = os.path.join(folder, ".complete")
    if not os.path.exists(marker):
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(root, ".lock"), "w") as lock:
            # Released when the file is closed, also when this process dies.
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not os.path.exists(marker):
                found = install(folder, version)
                with open(marker + ".tmp", "w") as f:
                    json.dump(found, f)
                os.replace(marker + ".tmp", marker)
    with open(marker) as f:
        print(json.dumps(json.load(f)))


if __name__ == "__main__":
    try:
        main()
    except (subprocess.CalledProcessError, OSError, RuntimeError) as e:
        say(f"cannot install the test SMTP server's packages: {e}")
        sys.exit(1)
