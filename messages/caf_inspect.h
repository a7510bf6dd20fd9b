// CAF serialisation of msg::Bytes (CAF 0.17 inspect, found by ADL). Header-only: included where
// messages carrying Bytes are made (actors, cluster endpoints), so the messages library itself does
// not depend on CAF.
#pragma once

#include <caf/all.hpp>

#include <type_traits>
#include <vector>

#include "messages/codec.h"

namespace m1::msg {

// CAF serialisation of a message buffer (CAF 0.17 inspect, found by ADL), so (atom, Bytes) and
// (atom, vector<Bytes>) messages can cross processes once the types are registered with
// register_message_types() on both ends. Saved as one byte sequence (CAF writes it raw); loaded
// into a fresh buffer, refused beyond kMaxMessageBytes. Decoding (messages/codec.h) still
// verifies every received buffer before any field is read.
template <class Inspector>
typename std::enable_if<Inspector::reads_state, typename Inspector::result_type>::type inspect(Inspector& f,
                                                                                              Bytes& x) {
  auto& v = const_cast<std::vector<uint8_t>&>(x.vec());  // only read while saving
  return f(caf::meta::type_name("m1.bytes"), v);
}
template <class Inspector>
typename std::enable_if<Inspector::writes_state, typename Inspector::result_type>::type inspect(Inspector& f,
                                                                                               Bytes& x) {
  std::vector<uint8_t> v;
  auto load = caf::meta::load_callback([&]() -> caf::error {
    if (v.size() > kMaxMessageBytes) return caf::make_error(caf::sec::invalid_argument, "m1.bytes over the size cap");
    x = Bytes(std::move(v));
    return caf::none;
  });
  return f(caf::meta::type_name("m1.bytes"), v, load);
}

}  // namespace m1::msg
