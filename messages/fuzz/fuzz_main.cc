// libFuzzer entry point for one message root type, chosen at compile time by M1_FUZZ_ROOT (a type
// name in m1::msg, e.g. Rollout; see fuzz.cmake). Every input goes through decode<T>; when it is
// accepted, every field is read (tests/messages/touch.h), so ASan/UBSan flag any accessor that a
// verified, semantically checked buffer could still make misbehave. Rejection is the normal case.
#include <cstddef>
#include <cstdint>

#include "messages/codec.h"
#include "tests/messages/touch.h"

#ifndef M1_FUZZ_ROOT
#error "define M1_FUZZ_ROOT to a root type of messages/*.fbs (fuzz.cmake does)"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint64_t hash = 0;
  m1::Status st = m1::msg::testing::decode_and_touch<m1::msg::M1_FUZZ_ROOT>(data, size, &hash);
  // A decoded message must name no error, and an error must name the root type.
  if (!st.is_ok() && st.message().rfind(m1::msg::MessageTraits<m1::msg::M1_FUZZ_ROOT>::kName, 0) != 0) {
    __builtin_trap();
  }
  return 0;
}
