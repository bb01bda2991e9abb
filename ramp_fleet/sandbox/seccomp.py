"""The seccomp filter of a sandboxed run: system calls a submission never needs are refused.

bubblewrap loads it (``--seccomp FD``) just before it starts the run, as a
compiled classic-BPF program, which is built here with the standard library
(no libseccomp on the hosts). Refused with ``EPERM``: debugging other
processes (ptrace, process_vm_*), kernel keyrings, mounts and namespaces
(mount, unshare, setns, and ``clone`` asking for a new user namespace),
kernel modules, kexec, BPF programs, perf events, userfaultfd, io_uring,
file handles (open_by_handle_at: a known container escape), swap, reboot,
the clock and the kernel log. ``clone3`` answers ``ENOSYS``, as on an old
kernel, so the C library falls back to ``clone`` whose flags the filter can
read. A call made through another ABI (32-bit ``int 0x80``, x32) is refused
whole. The same list serves x86-64 and arm64; on another machine the run
has no filter (and its report says so).
"""

from __future__ import annotations

import errno
import platform
import struct

#: Name → (x86-64 number, arm64 number); None: the call does not exist there.
DENIED: dict[str, tuple[int | None, int | None]] = {
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218),
    "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51),
    "unshare": (272, 97), "setns": (308, 268),
    "open_tree": (428, 428), "move_mount": (429, 429), "fsopen": (430, 430),
    "fsconfig": (431, 431), "fsmount": (432, 432), "fspick": (433, 433),
    "mount_setattr": (442, 442),
    "bpf": (321, 280), "perf_event_open": (298, 241), "userfaultfd": (323, 282),
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426), "io_uring_register": (427, 427),
    "kexec_load": (246, 104), "kexec_file_load": (320, 294), "init_module": (175, 105),
    "finit_module": (313, 273), "delete_module": (176, 106),
    "open_by_handle_at": (304, 265), "name_to_handle_at": (303, 264),
    "swapon": (167, 224), "swapoff": (168, 225), "reboot": (169, 142), "acct": (163, 89),
    "quotactl": (179, 60), "syslog": (103, 116), "lookup_dcookie": (212, 18),
    "vhangup": (153, 58), "settimeofday": (164, 170), "clock_settime": (227, 112),
    "adjtimex": (159, 171), "clock_adjtime": (305, 266),
    "iopl": (172, None), "ioperm": (173, None), "modify_ldt": (154, None), "uselib": (134, None),
}
CLONE = (56, 220)
CLONE3 = 435
CLONE_NEWUSER = 0x10000000
#: ``AUDIT_ARCH_*`` of the machines we filter, and the index of their numbers in DENIED.
ARCHES = {"x86_64": (0xC000003E, 0), "amd64": (0xC000003E, 0),
          "aarch64": (0xC00000B7, 1), "arm64": (0xC00000B7, 1)}
X32_BIT = 0x40000000

# Classic BPF, as in <linux/filter.h> and <linux/seccomp.h>.
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_NR, _ARCH, _ARG0_LOW = 0, 4, 16


def supported(machine: str | None = None) -> bool:
    return (machine or platform.machine()).lower() in ARCHES


def program(machine: str | None = None) -> bytes:
    """The filter for this machine (``platform.machine()``), as bwrap's ``--seccomp`` reads it."""
    audit_arch, column = ARCHES[(machine or platform.machine()).lower()]
    refuse = _ERRNO | errno.EPERM
    code: list[tuple[int, int, int, int]] = [
        (_LD_W_ABS, 0, 0, _ARCH),
        (_JEQ_K, 1, 0, audit_arch),
        (_RET_K, 0, 0, _ERRNO | errno.ENOSYS),  # another ABI on this kernel
        (_LD_W_ABS, 0, 0, _NR),
    ]
    if column == 0:  # x32 calls carry their own bit
        code += [(_JGE_K, 0, 1, X32_BIT), (_RET_K, 0, 0, _ERRNO | errno.ENOSYS)]
    for numbers in DENIED.values():
        number = numbers[column]
        if number is not None:
            code += [(_JEQ_K, 0, 1, number), (_RET_K, 0, 0, refuse)]
    code += [
        (_JEQ_K, 0, 1, CLONE3), (_RET_K, 0, 0, _ERRNO | errno.ENOSYS),
        (_JEQ_K, 0, 3, CLONE[column]),
        (_LD_W_ABS, 0, 0, _ARG0_LOW),  # clone's flags (their low half holds CLONE_NEWUSER)
        (_JSET_K, 0, 1, CLONE_NEWUSER), (_RET_K, 0, 0, refuse),
        (_RET_K, 0, 0, _ALLOW),
    ]
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in code)
