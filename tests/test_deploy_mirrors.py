"""deploy/build-base-image.sh takes its Debian mirrors from the machine's apt sources.

Hospitals build from their own mirror: the script reads the apt sources that
``apt-config`` points at (here a temporary folder, through ``APT_CONFIG``), and
``--mirror`` / ``PHT_DEBIAN_MIRROR`` (and the security counterparts) override them.
``--print-mirrors`` resolves them without root, Docker or network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "build-base-image.sh"

pytestmark = pytest.mark.skipif(
    shutil.which("apt-config") is None, reason="needs apt-config (a Debian host)"
)


def apt_dir(tmp_path: Path, sources_list: str = "", **parts: str) -> Path:
    """An apt configuration whose sources are ``sources_list`` and ``parts``
    (file name -> text, in sources.list.d); returns the APT_CONFIG file."""
    folder = tmp_path / "apt"
    (folder / "sources.list.d").mkdir(parents=True)
    (folder / "sources.list").write_text(sources_list, encoding="utf-8")
    for name, text in parts.items():
        (folder / "sources.list.d" / name).write_text(text, encoding="utf-8")
    config = folder / "apt.conf"
    config.write_text(
        f'Dir::Etc::sourcelist "{folder}/sources.list";\n'
        f'Dir::Etc::sourceparts "{folder}/sources.list.d";\n',
        encoding="utf-8",
    )
    return config


def mirrors(config: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PHT_DEBIAN_MIRROR", "PHT_DEBIAN_SECURITY_MIRROR")
    }
    return subprocess.run(  # noqa: S603
        ["bash", str(SCRIPT), "--print-mirrors", *args],  # noqa: S607
        env={**clean, "APT_CONFIG": str(config), **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def resolved(proc: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    return lines["mirror"], lines["security-mirror"]


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("build-base-image: ")
    return lines[0]


ONE_LINE = """\
# a hospital mirror, after a third-party repository and a source entry
deb [arch=amd64 signed-by=/k.gpg] https://pkg.example.com/apt cloud-sdk-bookworm main
deb-src http://src.example.org/debian bookworm main
deb [ arch=amd64 ] http://mirror.hospital.nl/debian/ bookworm main contrib  # main
deb http://mirror.hospital.nl/debian bookworm-updates main
deb http://mirror.hospital.nl/debian-security bookworm-security main
"""

DEB822 = """\
Types: deb
URIs: http://disabled.example.org/debian
Suites: bookworm bookworm-security
Components: main
Enabled: no

# the one apt uses
Types: deb-src deb
URIs: http://mirror.umcg.nl/debian
Suites:
 bookworm
 bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.umcg.nl/debian-security/
Suites: bookworm-security
Components: main
"""


def test_one_line_sources_list(tmp_path: Path) -> None:
    config = apt_dir(tmp_path, ONE_LINE)
    assert resolved(mirrors(config)) == (
        "http://mirror.hospital.nl/debian",
        "http://mirror.hospital.nl/debian-security",
    )


def test_deb822_sources_skip_disabled_and_source_only_entries(tmp_path: Path) -> None:
    config = apt_dir(tmp_path, **{"debian.sources": DEB822})
    assert resolved(mirrors(config)) == (
        "http://mirror.umcg.nl/debian",
        "http://security.umcg.nl/debian-security",
    )


def test_list_files_in_parts_and_renamed_files_ignored(tmp_path: Path) -> None:
    config = apt_dir(
        tmp_path,
        "",
        **{
            "a.list.disabled": "deb http://wrong.example.org/debian bookworm main\n",
            "b.list": "deb http://nki.example.nl/debian bookworm main\n"
            "deb http://nki.example.nl/security bookworm-security main\n",
        },
    )
    assert resolved(mirrors(config)) == (
        "http://nki.example.nl/debian",
        "http://nki.example.nl/security",
    )


def test_another_debian_suite_gives_the_mirror(tmp_path: Path) -> None:
    config = apt_dir(
        tmp_path,
        "deb http://mirror.example.nl/debian trixie main\n"
        "deb http://mirror.example.nl/debian-security trixie-security main\n",
    )
    assert resolved(mirrors(config)) == (
        "http://mirror.example.nl/debian",
        "http://mirror.example.nl/debian-security",
    )


def test_mirror_method_uses_the_first_url_of_its_list(tmp_path: Path) -> None:
    mirror_list = tmp_path / "debian.list"
    mirror_list.write_text(
        "# hospital mirrors\nhttp://m1.example.nl/debian\tpriority:1\n"
        "http://m2.example.nl/debian\n",
        encoding="utf-8",
    )
    config = apt_dir(
        tmp_path,
        f"deb mirror+file://{mirror_list} bookworm main\n"
        "deb http://m1.example.nl/debian-security bookworm-security main\n",
    )
    assert resolved(mirrors(config))[0] == "http://m1.example.nl/debian"


def test_no_debian_entry_is_a_one_line_error_naming_the_fix(tmp_path: Path) -> None:
    config = apt_dir(
        tmp_path,
        "deb http://archive.ubuntu.com/ubuntu jammy main\n"
        "deb cdrom:[Debian 12]/ bookworm main\n",
        **{
            "node.sources": "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\n"
            "Suites: nodistro\nComponents: main\n"
        },
    )
    line = one_line_error(mirrors(config))
    assert "no Debian mirror" in line and "sources.list" in line
    assert "--mirror URL" in line and "PHT_DEBIAN_MIRROR" in line


def test_no_security_entry_is_a_one_line_error_naming_the_fix(tmp_path: Path) -> None:
    config = apt_dir(tmp_path, "deb http://mirror.example.nl/debian bookworm main\n")
    line = one_line_error(mirrors(config))
    assert "no Debian security mirror" in line
    assert "--security-mirror URL" in line and "PHT_DEBIAN_SECURITY_MIRROR" in line


def test_options_and_environment_override_the_apt_sources(tmp_path: Path) -> None:
    config = apt_dir(tmp_path, ONE_LINE)
    env = {"PHT_DEBIAN_MIRROR": "http://env.example.nl/debian"}
    assert resolved(mirrors(config, **env))[0] == "http://env.example.nl/debian"
    assert resolved(
        mirrors(config, "--mirror", "http://opt.example.nl/debian", **env)
    ) == ("http://opt.example.nl/debian", "http://mirror.hospital.nl/debian-security")
    empty = apt_dir(tmp_path / "empty")
    assert resolved(
        mirrors(
            empty,
            "--mirror=http://a.example.nl/debian",
            "--security-mirror",
            "http://b.example.nl/debian-security",
        )
    ) == ("http://a.example.nl/debian", "http://b.example.nl/debian-security")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--mirrors"], "unknown option '--mirrors'; see"),
        (["--mirror"], "--mirror needs a URL"),
    ],
)
def test_bad_options_are_one_line_errors(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    assert expected in one_line_error(mirrors(apt_dir(tmp_path, ONE_LINE), *args))
