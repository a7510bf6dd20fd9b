// Stopping on SIGINT/SIGTERM. The first signal sets a flag that long-running stages (the SFT
// loop, the RL pipeline) poll between steps: they write a checkpoint and return. A second signal
// exits the process at once with status 130, without a checkpoint (the newest complete one
// stays valid: every checkpoint is written atomically).
// Thread safety: stop_requested() may be called from any thread; the flag is set by the handler.
#pragma once

namespace m1 {

// Installs the handlers for SIGINT and SIGTERM (idempotent).
void install_stop_handlers();
// True once SIGINT or SIGTERM has arrived.
bool stop_requested();

}  // namespace m1
