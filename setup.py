"""Build step that ships the web page's onnxruntime-web files inside the package (everything else is in
pyproject.toml). The files come from the npm registry at build time (`npm ci --prefix web`, pinned by
web/package-lock.json) and are never committed; an editable install serves them from web/node_modules."""

import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
ORT_DIST = ROOT / "web" / "node_modules" / "onnxruntime-web" / "dist"
# What the page loads: ort.min.js picks the JSEP build (seen in Chromium), the plain one where JSEP is unavailable.
ORT_FILES = ("ort.min.js", "ort-wasm-simd-threaded.jsep.mjs", "ort-wasm-simd-threaded.jsep.wasm",
             "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")


class BuildWithWebAssets(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        if not all((ORT_DIST / name).is_file() for name in ORT_FILES):
            subprocess.run(["npm", "ci", "--prefix", str(ROOT / "web"), "--no-audit", "--no-fund",
                            "--loglevel=error"], check=True)
        target = Path(self.build_lib) / "deepcat" / "serving" / "page" / "ort"
        target.mkdir(parents=True, exist_ok=True)
        for name in ORT_FILES:
            shutil.copy2(ORT_DIST / name, target / name)


setup(cmdclass={"build_py": BuildWithWebAssets})
