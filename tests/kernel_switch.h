// A kernel switch a test flips (cpu::force_reference, force_no_vnni, force_amx), turned off again
// when the test ends, also when an assertion throws: the next test starts on the default kernels.
#pragma once
#include "kernels/cpu/cpu.h"

namespace r1::test {

class KernelSwitch {
 public:
  using Fn = void (*)(bool);
  KernelSwitch(Fn set, bool on) : set_(set) { set_(on); }
  ~KernelSwitch() { set_(false); }
  void operator()(bool on) const { set_(on); }
  KernelSwitch(const KernelSwitch&) = delete;
  KernelSwitch& operator=(const KernelSwitch&) = delete;

 private:
  Fn set_;
};

}  // namespace r1::test
