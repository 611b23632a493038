# SPDX-License-Identifier: GPL-3.0-or-later
"""Classic BPF instructions and an assembler with labels (pure).

The encoding is the kernel's `struct sock_filter` (linux/filter.h) with the opcode
fields of linux/bpf_common.h; bpf.py writes the capture's program with it.
"""

from dataclasses import dataclass

# linux/bpf_common.h: class | size | mode, class | op | source
LD, LDX, ST, STX, ALU, JMP, RET, MISC = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
W, H, B = 0x00, 0x08, 0x10
IMM, ABS, IND, MEM, MSH = 0x00, 0x20, 0x40, 0x60, 0xA0
ADD, LSH, RSH, AND = 0x00, 0x60, 0x70, 0x50
JA, JEQ, JGT, JGE, JSET = 0x00, 0x10, 0x20, 0x30, 0x40
K, X = 0x00, 0x08
TAX, TXA = 0x00, 0x80
# linux/filter.h BPF_MAXINSNS; a jump's jt/jf is one byte, counted from the next insn
MAX_INSNS = 4096


@dataclass(frozen=True)
class Insn:
    """One `struct sock_filter` (linux/filter.h): u16 code, u8 jt, u8 jf, u32 k."""

    code: int
    jt: int
    jf: int
    k: int


class Assembler:
    """Instructions with symbolic jump targets (a label; None: the next instruction).

    A conditional jump reaches at most 255 instructions ahead (u8 jt/jf, counted from
    the next instruction, linux/filter.h); a farther one goes through `ja` trampolines.
    """

    def __init__(self):
        self.items = []  # ("label", name) or (code, jt, jf, k)
        self.fresh = 0

    def label(self, name):
        self.items.append(("label", name))

    def op(self, code, k=0, jt=None, jf=None):
        self.items.append((code, jt, jf, k & 0xFFFFFFFF))

    def ld(self, size, offset, x=False):
        """A = packet[k], or packet[X + k] when x."""
        self.op(LD | size | (IND if x else ABS), offset)

    def jump(self, test, k, jt=None, jf=None):
        self.op(JMP | test | K, k, jt, jf)

    def goto(self, target):
        self.op(JMP | JA, 0, target)

    def alu(self, operation, k=None):
        """A = A <operation> k, or A <operation> X without k."""
        self.op(ALU | operation | (X if k is None else K), k or 0)

    def ldx(self, k):
        self.op(LDX | W | IMM, k)

    def ldx_header_length(self, offset):
        """X = 4 * (packet[offset] & 0xf): an IPv4 header's length (BPF_MSH)."""
        self.op(LDX | B | MSH, offset)

    def stx(self, slot):
        self.op(STX, slot)

    def ldx_memory(self, slot):
        self.op(LDX | W | MEM, slot)

    def tax(self):
        self.op(MISC | TAX)

    def txa(self):
        self.op(MISC | TXA)

    def ret(self, k):
        self.op(RET | K, k)

    def _resolve(self):
        """-> [(item index, position, code, jt distance, jf distance, k)]."""
        where, insns, position = {}, [], 0
        for index, item in enumerate(self.items):
            if item[0] == "label":
                where[item[1]] = position
            else:
                insns.append((index, position, item))
                position += 1
        resolved = []
        for index, position, (code, jt, jf, k) in insns:
            def distance(target, position=position):
                gap = 0 if target is None else where[target] - position - 1
                if gap < 0:
                    raise ValueError(f"jump back to {target}: classic BPF only jumps forward")
                return gap
            resolved.append((index, position, code, distance(jt), distance(jf), k))
        return resolved

    def _relax(self):
        """Rewrite the first too-far conditional jump through two `ja`; True if one was."""
        for index, _, code, jt, jf, k in self._resolve():
            if code & 0x07 == JMP and code != JMP | JA and max(jt, jf) > 255:
                _, jt_label, jf_label, _ = self.items[index]
                self.fresh += 1
                false, after = f"relax{self.fresh}.f", f"relax{self.fresh}.after"
                self.items[index:index + 1] = [(code, None, false, k), (JMP | JA, jt_label or after, None, 0),
                                               ("label", false), (JMP | JA, jf_label or after, None, 0),
                                               ("label", after)]
                return True
        return False

    def assemble(self):
        """-> tuple of Insn, as the kernel takes them."""
        while self._relax():
            pass
        program = []
        for _, _, code, jt, jf, k in self._resolve():
            if code == JMP | JA:
                program.append(Insn(code, 0, 0, jt))
            else:
                program.append(Insn(code, jt, jf, k))
        if len(program) > MAX_INSNS:
            raise ValueError(f"{len(program)} instructions; the kernel takes at most {MAX_INSNS}")
        return tuple(program)
