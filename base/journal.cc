#include "base/journal.h"

#include <sys/stat.h>

#include <cstdlib>

#include "base/strings.h"

namespace cellhouse {

bool StderrIsJournal() {
  // NOLINTNEXTLINE(concurrency-mt-unsafe): read at start-up, before any thread
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (stream == nullptr) return false;
  auto parts = Split(stream, ':');
  if (parts.size() != 2) return false;
  auto dev = ParseUint64(parts[0], "JOURNAL_STREAM");
  auto ino = ParseUint64(parts[1], "JOURNAL_STREAM");
  struct stat st {};
  if (!dev || !ino || ::fstat(2, &st) != 0) return false;
  return st.st_dev == *dev && st.st_ino == *ino;
}

const char* JournalPrefix(const char* prefix) { return StderrIsJournal() ? prefix : ""; }

}  // namespace cellhouse
