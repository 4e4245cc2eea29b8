"""Build hook: the wheel carries the protocol reference `fusetrace explain` quotes.

docs/protocol.md is the one source of the text. It is copied into the built package as
fusetrace/data/protocol.md when the package is built (wheel, or sdist turned into a wheel);
nothing keeps a second copy in the source tree. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "docs" / "protocol.md"


class BuildWithReference(build_py):
    def run(self) -> None:
        super().run()
        if not REFERENCE.is_file():
            raise SystemExit(f"{REFERENCE} is missing: the package needs it for `explain`")
        target = Path(self.build_lib) / "fusetrace" / "data" / "protocol.md"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REFERENCE, target)


setup(cmdclass={"build_py": BuildWithReference})
