#include "base/stop.h"

#include <unistd.h>

#include <atomic>
#include <csignal>

namespace m1 {

namespace {

std::atomic<int> g_signals{0};

void on_signal(int) {
  if (g_signals.fetch_add(1) == 0) return;
  static const char kMsg[] = "\nm1rl: second interrupt: exiting now, without a checkpoint\n";
  ssize_t n = write(STDERR_FILENO, kMsg, sizeof kMsg - 1);
  (void)n;
  _exit(130);
}

}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool stop_requested() { return g_signals.load(std::memory_order_relaxed) > 0; }

}  // namespace m1
