"""Open an HTML report in headless Chromium: what the page looks like to a reader.

`browser_checks` loads a copy of the page with a small script that, once everything has
loaded, records how many images there are, which did not load, the page's scroll width and
height at the given window width, and on how many rows the figures lie; `screenshot` writes a
PNG of the whole page.
"""

import html
import json
import os
import re
import shutil
import subprocess

CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (image) {
    return !(image.complete && image.naturalWidth > 0);
  }).map(function (image) { return image.alt || image.src.slice(0, 40); });
  var root = document.documentElement;
  var tops = {};
  Array.prototype.forEach.call(document.querySelectorAll("figure"), function (figure) {
    tops[Math.round(figure.getBoundingClientRect().top)] = true;
  });
  var result = {images: images.length, broken: broken, scroll_width: root.scrollWidth,
                client_width: root.clientWidth, height: root.scrollHeight,
                figure_rows: Object.keys(tops).length};
  var out = document.createElement("pre");
  out.id = "browser-checks";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>"""

# flags for a headless run on a machine without a display, GPU, sandbox or network
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-extensions", "--disable-sync",
         "--no-first-run", "--no-default-browser-check", "--mute-audio",
         "--hide-scrollbars", "--virtual-time-budget=15000")


def find_chromium():
    """Path of a Chromium or Chrome executable (``GPM_ASTRO_CHROMIUM`` first), or None."""
    names = [os.environ.get("GPM_ASTRO_CHROMIUM", ""), "chromium", "chromium-browser",
             "google-chrome", "google-chrome-stable"]
    return next((shutil.which(n) for n in names if n and shutil.which(n)), None)


def _run(chromium, args, profile, timeout):
    command = [chromium, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          check=False)


def browser_checks(chromium, page, workdir, *, width=1400, timeout=120):
    """Load ``page`` at ``width`` px and return the checks the page's script recorded."""
    text = page.read_text(encoding="utf-8")
    copy = workdir / "checked.html"
    copy.write_text(text.replace("</body>", CHECK_SCRIPT + "</body>", 1), encoding="utf-8")
    done = _run(chromium, [f"--window-size={width},900", "--dump-dom", copy.as_uri()],
                workdir / "profile", timeout)
    found = re.search(r'<pre id="browser-checks">(.*?)</pre>', done.stdout, re.S)
    if found is None:
        raise RuntimeError(f"chromium recorded no checks (exit {done.returncode}): "
                           f"{done.stderr[-2000:]}")
    return json.loads(html.unescape(found.group(1)))


def screenshot(chromium, page, path, *, width=1400, height=2000, timeout=120):
    """Write a PNG of ``page`` (``width`` x ``height`` px) to ``path``."""
    done = _run(chromium, [f"--window-size={width},{height}", f"--screenshot={path}",
                           page.resolve().as_uri()], path.parent / "profile-shot", timeout)
    if not path.is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {done.returncode}): "
                           f"{done.stderr[-2000:]}")
    return path
