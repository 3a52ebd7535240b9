// r1: the command-line entry point. Parses the subcommand, runs it, and turns every error into
// one line on stderr with a documented exit code (0 ok, 1 usage, 2 input/model, 130 interrupted).
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <exception>
#include <new>
#include <algorithm>
#include <cctype>

#include "cli/command.h"
#include "cli/term.h"
#include "core/error.h"
#include "core/suggest.h"

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

// A parse error, in one line that points to the right --help. An unknown option of `sub` is
// the error to report whatever CLI11 tripped on (its value may have become a stray positional),
// with the nearest option it has.
static int usage_error(CLI::App* sub, const CLI::ParseError& e, int argc, char** argv) {
  std::string msg = e.what();
  if (sub) {
    std::vector<std::string> names;
    for (const CLI::Option* o : sub->get_options()) {
      for (auto& n : o->get_lnames()) names.push_back("--" + n);
      for (auto& n : o->get_snames()) names.push_back("-" + n);
    }
    for (int i = 1; i < argc; i++) {
      const std::string a = argv[i], name = a.substr(0, a.find('='));
      const bool option = a.rfind("--", 0) == 0 ? a.size() > 2 : a.size() == 2 && a[0] == '-' && !std::isdigit(uint8_t(a[1]));
      if (!option || sub->get_option_no_throw(name)) continue;
      const std::string near = r1::nearest(name, names);
      msg = "unknown option " + name + (near.empty() ? "" : "; did you mean " + near + "?");
      break;
    }
  }
  const std::string who = sub ? "r1 " + sub->get_name() : "r1";
  std::fprintf(stderr, "%s: usage error: %s (see %s --help)\n", who.c_str(), msg.c_str(), who.c_str());
  return 1;
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

  // A first word that is no command is a mistyped one (CLI11 would say "A subcommand is required").
  std::vector<std::string> names;
  for (auto& d : defs) names.push_back(d.name);
  if (argc == 1) {
    std::fprintf(stderr, "r1: no command given (r1 --help lists the commands; r1 chat -m MODEL starts a chat)\n");
    return 1;
  }
  if (argv[1][0] != '-' && std::find(names.begin(), names.end(), argv[1]) == names.end()) {
    const std::string near = r1::nearest(argv[1], names);
    std::fprintf(stderr, "r1: unknown command '%s'%s (r1 --help lists the commands)\n", argv[1],
                 near.empty() ? "" : ("; did you mean " + near + "?").c_str());
    return 1;
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
    CLI::App* sub = nullptr;  // the command being parsed: r1 takes no option before it
    for (auto& [s, run] : runners)
      if (argc > 1 && s->get_name() == argv[1]) sub = s;
    return usage_error(sub, e, argc, argv);
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
