#!/usr/bin/env bash
# Here, before a device call: pack what the GPU machine needs beyond the working tree into
# build-carry/*.tar.xz (name build-carry in the call's carry): the bundle (make bundle), an older
# r1 to compare with (BASE=path/to/r1, optional; it goes in as bundle/r1-base) and the fixture
# models. A call takes 64 MiB in all, working tree included, so move tests/fixtures out of the
# tree for the call and back after it; on the GPU machine scripts/gpu_check.sh unpack restores
# bundle/ and tests/fixtures/models.
set -euo pipefail
cd "$(dirname "$0")/.."
test -x bundle/r1 || { echo "make bundle first" >&2; exit 1; }
mkdir -p build-carry
if [ -n "${BASE:-}" ]; then cp "$BASE" bundle/r1-base; fi
tar cf - bundle | xz -9 -T0 > build-carry/bundle.tar.xz
# xz (not zstd) because it is on every Linux; the fixtures change rarely: packed once. tiny-qwen3
# stays behind: the GPU kernels do not run its q/k norm, and the 64 MiB are tight.
test -s build-carry/fixtures.tar.xz || tar cf - --exclude=tiny-qwen3 tests/fixtures/models | xz -9 -T0 > build-carry/fixtures.tar.xz
du -ch build-carry/*.tar.xz
