// Whether standard error goes to the systemd journal, and the sd-daemon(3) priority prefixes
// that give journal lines their level ("<3>" error, "<4>" warning, "<6>" info).
//
//   if (StderrIsJournal()) Printf(stderr, "%swarning text\n", kJournalWarning);
#ifndef CELLHOUSE_BASE_JOURNAL_H_
#define CELLHOUSE_BASE_JOURNAL_H_

namespace cellhouse {

inline constexpr const char* kJournalError = "<3>";
inline constexpr const char* kJournalWarning = "<4>";
inline constexpr const char* kJournalInfo = "<6>";

// True when JOURNAL_STREAM names the device and inode of fd 2 (systemd.exec(5)), so a stderr
// inherited from a service is recognised but one redirected elsewhere is not.
bool StderrIsJournal();

// `prefix` under the journal, "" otherwise.
const char* JournalPrefix(const char* prefix);

}  // namespace cellhouse

#endif  // CELLHOUSE_BASE_JOURNAL_H_
