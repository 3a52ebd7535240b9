// Subcommand registry: each cli/cmd_*.cpp registers itself with R1_COMMAND, so adding a command
// touches one file. A command's setup adds its options to its CLI11 subcommand and returns the
// function that runs it (its return value is the exit code).
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace r1::cli {

using Runner = std::function<int()>;
using Setup = std::function<Runner(CLI::App& sub)>;

struct CommandDef {
  std::string name, help;
  int order;  // position in `r1 --help`
  Setup setup;
};

std::vector<CommandDef>& commands();
inline bool add_command(CommandDef def) { commands().push_back(std::move(def)); return true; }

}  // namespace r1::cli

#define R1_CAT2(a, b) a##b
#define R1_CAT(a, b) R1_CAT2(a, b)
// Variadic so that a lambda with commas can be passed as the setup.
#define R1_COMMAND(name, help, order, ...) \
  static const bool R1_CAT(r1_cmd_, __LINE__) = ::r1::cli::add_command({name, help, order, __VA_ARGS__})
