// r1: the command-line entry point. Parses the subcommand, runs it, and turns every error into
// one line on stderr with a documented exit code (0 ok, 1 usage, 2 input/model, 130 interrupted).
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <exception>
#include <new>
#include <algorithm>

#include "cli/command.h"
#include "cli/term.h"
#include "core/error.h"

namespace r1::cli {
std::vector<CommandDef>& commands() {
  static std::vector<CommandDef> list;
  return list;
}
}  // namespace r1::cli

// The model file is mapped, not read: if another process truncates it while we run, touching a
// page past its new end raises SIGBUS. Say what happened instead of dying with "Bus error".
static void on_sigbus(int) {
  static const char msg[] = "r1: the model file was truncated or changed while in use; re-run with an intact file\n";
  ssize_t w = write(2, msg, sizeof msg - 1);
  (void)w;
  _exit(2);
}

int main(int argc, char** argv) {
  // A closed pipe (`r1 run | head`) must end quietly: write errors are handled where we write.
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGBUS, on_sigbus);
  // Past a file-size limit (ulimit -f) writes fail with EFBIG and are reported like a full disk.
  std::signal(SIGXFSZ, SIG_IGN);

  CLI::App app{"r1: run DeepSeek-R1 distilled models on your own machine", "r1"};
  app.set_version_flag("--version", std::string("r1 ") + R1_VERSION);
  app.require_subcommand(1);
  app.failure_message(CLI::FailureMessage::help);

  auto& defs = r1::cli::commands();
  std::sort(defs.begin(), defs.end(), [](auto& a, auto& b) { return a.order < b.order; });
  std::vector<std::pair<CLI::App*, r1::cli::Runner>> runners;
  for (auto& d : defs) {
    CLI::App* sub = app.add_subcommand(d.name, d.help);
    runners.emplace_back(sub, d.setup(*sub));
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "r1: usage error: %s (see r1 --help)\n", e.what());
    return 1;
  }

  for (auto& [sub, run] : runners) {
    if (!sub->parsed()) continue;
    try {
      const int code = run();
      r1::cli::close_stdout();  // what is still buffered may not fit on the disk either
      return code;
    } catch (const r1::cli::PipeClosed&) {
      return 0;  // the reader has what it wanted (`r1 run | head`): not an error
    } catch (const r1::Error& e) {
      std::fprintf(stderr, "r1 %s: %s\n", sub->get_name().c_str(), e.what());
      return int(e.kind);
    } catch (const std::bad_alloc&) {
      std::fprintf(stderr, "r1 %s: out of memory\n", sub->get_name().c_str());
      return 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "r1 %s: %s\n", sub->get_name().c_str(), e.what());
      return 2;
    }
  }
  return 1;
}
