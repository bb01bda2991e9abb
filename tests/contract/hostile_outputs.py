"""Submissions whose ``training_output`` (or log) is built to hurt whoever receives it.

Each plants its trap from ``fit`` — the only code a participant controls —
once, in its own ``training_output`` (the one folder of a run that comes
back), and then trains like any other submission: what stops it must be the
receiving side. Spelled to pass rampwf's sanitizer (no `` open``, ``shutil``,
``ftruncate``...).
"""

from __future__ import annotations

import textwrap

TEMPLATE = '''
import os, pathlib, sys
from sklearn.linear_model import LogisticRegression

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "training_output")


def plant():
{body}


class Hostile(LogisticRegression):
    def fit(self, X, y):
        os.makedirs(OUT, exist_ok=True)
        marker = pathlib.Path(OUT, "planted")
        if not marker.exists():
            marker.write_text("1")
            plant()
        return super().fit(X, y)


def get_estimator():
    return Hostile(max_iter=500)
'''

#: Registers, from ``fit``, an exit handler that puts ``{put}`` where training_output was.
SWAP = '''
    import atexit

    def swap():
        remove = getattr(__import__("sh" + "util"), "rm" + "tree")
        remove(OUT)
        {put}

    atexit.register(swap)
'''

#: name → (what ``plant`` does, what the refusal says).
TRAPS = {
    "hard_link": ('''
    pathlib.Path(OUT, "a.csv").write_text("1,2\\n")
    os.link(os.path.join(OUT, "a.csv"), os.path.join(OUT, "b.csv"))
''', "is a hard link"),
    "fifo": ('''
    os.mkfifo(os.path.join(OUT, "pipe"))
''', "'pipe' is a FIFO"),
    "ten_gb_of_zeros": ('''
    zeros = pathlib.Path(OUT, "zeros.npy")
    zeros.touch()
    os.truncate(zeros, 10 << 30)  # sparse: 10 GB of zeros that cost no disk
''', "'zeros.npy' is larger than"),
    # At the run's very end (an atexit handler), training_output is replaced: the receiving
    # side must neither block on a FIFO nor follow a link to a host file.
    "swapped_for_a_fifo": (SWAP.format(put="os.mkfifo(OUT)"), "training_output is not a folder"),
    "swapped_for_a_link": (SWAP.format(put="os.symlink('/etc', OUT)"),
                           "training_output is not a folder"),
    "swapped_for_a_file": (SWAP.format(put="pathlib.Path(OUT).write_text('archive bytes')"),
                           "training_output is not a folder"),
    "twenty_thousand_files": ('''
    many = pathlib.Path(OUT, "many")
    many.mkdir()
    for index in range(20_000):
        (many / str(index)).touch()
''', "more than 10000 files"),
}

#: Writes a 1 GB log: kept bounded with a marker, and the submission still scores
#: (a long log is no attack on its own; reading it whole would be the fault).
CHATTY = '''
    block = ("x" * 1023 + "\\n") * 1024
    for _ in range(1024):
        sys.stdout.write(block)
    sys.stdout.flush()
'''
CHATTY_BYTES = 1 << 30


def source(body: str) -> str:
    """The submission that runs ``body`` (statements) once, from its first ``fit``."""
    return TEMPLATE.format(body=textwrap.indent(textwrap.dedent(body).strip("\n"), "    "))
