"""`synthfm annotate` in a real OpenCV window on a virtual X display (Xvfb), driven by xdotool.

Skips cleanly where Xvfb or xdotool is not installed (``apt-get install -y xvfb xdotool``).
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest


pytestmark = pytest.mark.skipif(
    shutil.which("Xvfb") is None or shutil.which("xdotool") is None, reason="needs Xvfb and xdotool"
)
REPO = Path(__file__).resolve().parents[1]
SCALE = 9  # a 40 x 60 image is shown 9x (synthfm.annotator.window.display_scale)


def _wait(predicate, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture()
def display():
    number = next(n for n in range(90, 140) if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists())
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(lambda: Path(f"/tmp/.X11-unix/X{number}").exists() or server.poll() is not None, 15, "Xvfb")
        if server.poll() is not None:
            pytest.skip("Xvfb did not start")
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _xdotool(env, *args) -> str:
    return subprocess.run(["xdotool", *args], env=env, capture_output=True, text=True, timeout=30).stdout.strip()


def test_click_save_quit_in_a_real_window(display, tmp_path, tiny_checkpoint):
    model = tiny_checkpoint
    image = np.full((40, 60), 30, np.uint8)
    image[10:30, 15:45] = 200
    cv2.imwrite(str(tmp_path / "img.png"), image)
    out = tmp_path / "labels.png"
    log = tmp_path / "stdout.txt"
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    env.pop("WAYLAND_DISPLAY", None)
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "synthfm.cli", "annotate", str(tmp_path / "img.png"),
                                 "--model", str(model), "--out", str(out)],
                                cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        window = _wait(lambda: _xdotool(env, "search", "--name", "synthfm annotate").split("\n")[0], 60, "the window")
        time.sleep(0.5)  # let the first frame be drawn
        x, y = (round((v + 0.5) * SCALE - 0.5) for v in (30, 20))
        _xdotool(env, "mousemove", "--window", window, str(x), str(y), "click", "1")
        clicked = _wait(lambda: next((ln for ln in log.read_text().splitlines() if ln.startswith("click +")), None),
                        30, "the click to be handled")
        assert "(30, 20)" in clicked and "object 1" in clicked
        _xdotool(env, "key", "--window", window, "s")
        saved = _wait(lambda: next((ln for ln in log.read_text().splitlines() if ln.startswith("saved ")), None),
                      30, "the save")
        _xdotool(env, "key", "--window", window, "q")
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    mask = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (40, 60) and set(np.unique(mask)) <= {0, 1}
    pixels = int(clicked.split(": ")[1].split(" pixels")[0])
    assert int(mask.sum()) == pixels and f"{pixels} pixels" in saved
