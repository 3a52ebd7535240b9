// Files r1 writes whole (r1 pack's .r1m, chat's /save, the model cache): the destination is
// checked before any work, the data goes to a temporary beside it (NAME.tmp.PID), and a rename
// puts it in place, so a reader never sees half a file and a failure leaves the old one.
#pragma once
#include <string>
#include <string_view>

namespace r1 {

// The file to replace for an output named `path`: a symlink is followed to its target (which is
// replaced, the link kept). fail_input, before anything is written, when that target exists and
// is not a regular file (a device such as /dev/null, a directory, a fifo), or its directory does
// not exist or is not writable.
std::string output_target(const std::string& path);

// This process's temporary for `target`, and the removal of those that processes which no
// longer exist left beside it (a SIGKILLed pack cannot clean up after itself).
std::string temp_path(const std::string& target);
void remove_stale_temps(const std::string& target);

// output_target, then data written to a temporary, synced and renamed over the target.
void write_file_atomic(const std::string& path, std::string_view data);

// "a directory", "a device", "a fifo", ... for a stat mode that is not a regular file.
const char* file_kind(unsigned mode);

// Temporaries to remove if a signal ends the process mid-write: registered before the file is
// created, unregistered once it is renamed or removed (-1: the list is full; then only the
// writer's own cleanup removes it). remove_registered_temps() is async-signal-safe.
int register_temp(const std::string& path);
void unregister_temp(int slot);
void remove_registered_temps();
// SIGINT, SIGTERM and SIGHUP remove the registered temporaries, then end the process as the
// signal would have.
void install_cleanup_handlers();

}  // namespace r1
