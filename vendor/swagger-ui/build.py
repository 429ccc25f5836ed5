"""Rebuild Swagger UI's files in ``src/mnist_pipeline/serving/static/``, which ``serve`` uses
for its ``/docs`` page so that it renders offline (FastAPI's default page loads them from a CDN).

    python vendor/swagger-ui/build.py        # needs npm and the npm registry

Takes ``swagger-ui-bundle.js`` and ``swagger-ui.css`` (their source-map comments dropped: the
maps are not shipped) and the licence files from npm's ``swagger-ui-dist``, after checking the
tarball against the integrity recorded here.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "swagger-ui-dist@5.36.0"
INTEGRITY = (  # npm view swagger-ui-dist@5.36.0 dist.integrity
    "sha512-Lt6/Kb0gXmLdiabLhvso4VdJP9V7qJWB0zh0gzeXUV3+"
    "CMOTzMmvpJRSXN7EAjfwixwmoi9ezDbLHiexC7lA9A=="
)
STATIC = Path(__file__).resolve().parents[2] / "src" / "mnist_pipeline" / "serving" / "static"
FILES = {  # in the tarball's package/ -> in static/
    "swagger-ui-bundle.js": "swagger-ui-bundle.js",
    "swagger-ui.css": "swagger-ui.css",
    "LICENSE": "swagger-ui-LICENSE.txt",
    "NOTICE": "swagger-ui-NOTICE.txt",
    "swagger-ui-bundle.js.LICENSE.txt": "swagger-ui-bundle.js.LICENSE.txt",
}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["npm", "pack", "--silent", "--pack-destination", tmp, PACKAGE],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        tarball = next(Path(tmp).glob("*.tgz"))
        digest = hashlib.sha512(tarball.read_bytes()).digest()
        actual = "sha512-" + base64.b64encode(digest).decode()
        if actual != INTEGRITY:
            raise SystemExit(f"error: {PACKAGE}: integrity {actual} != recorded {INTEGRITY}")
        with tarfile.open(tarball) as archive:
            for name, target in FILES.items():
                text = archive.extractfile(f"package/{name}").read().decode("utf-8")
                lines = [line for line in text.split("\n") if "sourceMappingURL=" not in line]
                (STATIC / target).write_text("\n".join(lines), encoding="utf-8")
                print(f"wrote {STATIC / target}")


if __name__ == "__main__":
    main()
