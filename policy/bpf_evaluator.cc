#include "policy/bpf_evaluator.h"

#include <array>
#include <cstddef>
#include <cstring>
#include <string>

#include "base/str_cat.h"

namespace cellhouse::policy {
namespace {

// BPF_MAXINSNS (linux/bpf_common.h) and BPF_MEMWORDS (linux/filter.h): the kernel's bounds.
constexpr size_t kMaxInstructions = BPF_MAXINSNS;
constexpr uint32_t kMemWords = BPF_MEMWORDS;

// The opcodes seccomp_check_filter accepts, the only ones this interpreter runs.
bool IsSeccompOpcode(uint16_t code) {
  switch (code) {
    case BPF_LD | BPF_W | BPF_ABS:
    case BPF_LD | BPF_W | BPF_LEN:
    case BPF_LDX | BPF_W | BPF_LEN:
    case BPF_LD | BPF_IMM:
    case BPF_LDX | BPF_IMM:
    case BPF_LD | BPF_MEM:
    case BPF_LDX | BPF_MEM:
    case BPF_ST:
    case BPF_STX:
    case BPF_RET | BPF_K:
    case BPF_RET | BPF_A:
    case BPF_MISC | BPF_TAX:
    case BPF_MISC | BPF_TXA:
    case BPF_JMP | BPF_JA:
    case BPF_JMP | BPF_JEQ | BPF_K:
    case BPF_JMP | BPF_JEQ | BPF_X:
    case BPF_JMP | BPF_JGE | BPF_K:
    case BPF_JMP | BPF_JGE | BPF_X:
    case BPF_JMP | BPF_JGT | BPF_K:
    case BPF_JMP | BPF_JGT | BPF_X:
    case BPF_JMP | BPF_JSET | BPF_K:
    case BPF_JMP | BPF_JSET | BPF_X:
      return true;
    default:
      break;
  }
  if (BPF_CLASS(code) == BPF_ALU) {
    switch (BPF_OP(code)) {
      case BPF_ADD:
      case BPF_SUB:
      case BPF_MUL:
      case BPF_DIV:
      case BPF_OR:
      case BPF_AND:
      case BPF_LSH:
      case BPF_RSH:
      case BPF_MOD:
      case BPF_XOR:
        return (code & ~(BPF_OP(code) | BPF_SRC(code))) == BPF_ALU;
      case BPF_NEG:
        return code == (BPF_ALU | BPF_NEG);
      default:
        return false;
    }
  }
  return false;
}

Error Refuse(size_t pc, const sock_filter& insn, const std::string& why) {
  return Error(
      StrCat("seccomp program instruction ", pc, " (code ", insn.code, ", k ", insn.k, "): ", why));
}

uint32_t Alu(uint16_t op, uint32_t a, uint32_t operand) {
  switch (op) {
    case BPF_ADD:
      return a + operand;
    case BPF_SUB:
      return a - operand;
    case BPF_MUL:
      return a * operand;
    case BPF_DIV:
      return operand == 0 ? 0 : a / operand;
    case BPF_MOD:
      return operand == 0 ? 0 : a % operand;
    case BPF_OR:
      return a | operand;
    case BPF_AND:
      return a & operand;
    case BPF_XOR:
      return a ^ operand;
    case BPF_LSH:
      return operand >= 32 ? 0 : a << operand;
    case BPF_RSH:
      return operand >= 32 ? 0 : a >> operand;
    case BPF_NEG:
      return 0U - a;
    default:
      return 0;
  }
}

bool Jump(uint16_t op, uint32_t a, uint32_t operand) {
  switch (op) {
    case BPF_JEQ:
      return a == operand;
    case BPF_JGT:
      return a > operand;
    case BPF_JGE:
      return a >= operand;
    case BPF_JSET:
      return (a & operand) != 0;
    default:
      return false;
  }
}

}  // namespace

Status VerifySeccompProgram(std::span<const sock_filter> program) {
  if (program.empty() || program.size() > kMaxInstructions) {
    return Error(StrCat("seccomp program has ", program.size(),
                        " instructions; the kernel accepts 1 to ", kMaxInstructions));
  }
  // Which scratch words are certainly written on every path reaching each instruction (the
  // kernel's check_load_and_stores). Jumps only go forward, so one pass suffices.
  std::array<uint16_t, kMaxInstructions> valid_at{};
  valid_at.fill(0xffff);
  uint16_t valid = 0;
  const size_t n = program.size();
  for (size_t pc = 0; pc < n; ++pc) {
    const sock_filter& insn = program[pc];
    valid &= valid_at[pc];
    if (!IsSeccompOpcode(insn.code)) {
      return Refuse(pc, insn, "opcode not allowed in seccomp");
    }
    const uint16_t cls = BPF_CLASS(insn.code);
    if (insn.code == (BPF_LD | BPF_W | BPF_ABS)) {
      if (insn.k % 4 != 0 || insn.k >= sizeof(seccomp_data)) {
        return Refuse(pc, insn, "load outside struct seccomp_data or unaligned");
      }
    } else if (cls == BPF_ALU && BPF_SRC(insn.code) == BPF_K &&
               (BPF_OP(insn.code) == BPF_DIV || BPF_OP(insn.code) == BPF_MOD) && insn.k == 0) {
      return Refuse(pc, insn, "division by constant zero");
    } else if (cls == BPF_ALU && BPF_SRC(insn.code) == BPF_K &&
               (BPF_OP(insn.code) == BPF_LSH || BPF_OP(insn.code) == BPF_RSH) && insn.k >= 32) {
      return Refuse(pc, insn, "shift by 32 or more");
    } else if (insn.code == (BPF_LD | BPF_MEM) || insn.code == (BPF_LDX | BPF_MEM) ||
               insn.code == BPF_ST || insn.code == BPF_STX) {
      if (insn.k >= kMemWords) {
        return Refuse(pc, insn, "scratch memory index out of range");
      }
      const auto bit = static_cast<uint16_t>(1U << insn.k);
      if (cls == BPF_ST || cls == BPF_STX) {
        valid |= bit;
      } else if ((valid & bit) == 0) {
        return Refuse(pc, insn, "scratch memory read before it is written");
      }
    } else if (cls == BPF_JMP) {
      if (BPF_OP(insn.code) == BPF_JA) {
        if (insn.k >= n - pc - 1) {
          return Refuse(pc, insn, "jump past the end");
        }
        valid_at[pc + 1 + insn.k] &= valid;
        valid = 0xffff;  // the next instruction is reached only by jumps to it
      } else {
        if (pc + 1 + insn.jt >= n || pc + 1 + insn.jf >= n) {
          return Refuse(pc, insn, "conditional jump past the end");
        }
        valid_at[pc + 1 + insn.jt] &= valid;
        valid_at[pc + 1 + insn.jf] &= valid;
        valid = 0xffff;
      }
    } else if (cls == BPF_RET) {
      valid = 0xffff;
    }
  }
  if (BPF_CLASS(program[n - 1].code) != BPF_RET) {
    return Refuse(n - 1, program[n - 1], "the program does not end with a return");
  }
  return Ok();
}

uint32_t EvaluateSeccomp(std::span<const sock_filter> program, const seccomp_data& data) {
  if (!VerifySeccompProgram(program)) {
    return SECCOMP_RET_KILL_PROCESS;
  }
  std::array<std::byte, sizeof(seccomp_data)> input{};
  std::memcpy(input.data(), &data, sizeof(data));
  std::array<uint32_t, kMemWords> mem{};
  uint32_t a = 0;
  uint32_t x = 0;
  // Verified: every jump goes forward inside the program and the last instruction returns, so
  // this loop ends at a return within program.size() steps.
  for (size_t pc = 0; pc < program.size(); ++pc) {
    const sock_filter& insn = program[pc];
    const uint16_t code = insn.code;
    switch (BPF_CLASS(code)) {
      case BPF_LD:
        if (code == (BPF_LD | BPF_W | BPF_ABS)) {
          std::memcpy(&a, input.data() + insn.k, sizeof(a));  // native byte order, as the kernel
        } else if (code == (BPF_LD | BPF_W | BPF_LEN)) {
          a = sizeof(seccomp_data);
        } else if (code == (BPF_LD | BPF_IMM)) {
          a = insn.k;
        } else {
          a = mem[insn.k];
        }
        break;
      case BPF_LDX:
        if (code == (BPF_LDX | BPF_W | BPF_LEN)) {
          x = sizeof(seccomp_data);
        } else if (code == (BPF_LDX | BPF_IMM)) {
          x = insn.k;
        } else {
          x = mem[insn.k];
        }
        break;
      case BPF_ST:
        mem[insn.k] = a;
        break;
      case BPF_STX:
        mem[insn.k] = x;
        break;
      case BPF_ALU:
        a = Alu(BPF_OP(code), a, BPF_SRC(code) == BPF_X ? x : insn.k);
        break;
      case BPF_JMP:
        if (BPF_OP(code) == BPF_JA) {
          pc += insn.k;
        } else {
          pc += Jump(BPF_OP(code), a, BPF_SRC(code) == BPF_X ? x : insn.k) ? insn.jt : insn.jf;
        }
        break;
      case BPF_RET:
        return BPF_RVAL(code) == BPF_A ? a : insn.k;
      case BPF_MISC:
        if (BPF_MISCOP(code) == BPF_TAX) {
          x = a;
        } else {
          a = x;
        }
        break;
      default:
        return SECCOMP_RET_KILL_PROCESS;
    }
  }
  return SECCOMP_RET_KILL_PROCESS;  // unreachable for a verified program
}

}  // namespace cellhouse::policy
