/*
 * main.c - amber-store: the store engine's own tool (the eseutil analog).
 * Dispatches to the subcommands and holds their manual pages (--help).
 */
#include <stdio.h>
#include <string.h>

#include "amber/store.h"
#include "store/tool/tool.h"

#ifndef AMBER_VERSION
#define AMBER_VERSION "0.1.0"
#endif

int tool_exit_code(int ams_rc)
{
	switch (ams_rc) {
	case AMS_OK:
		return EXIT_OK;
	case AMS_EINVAL:
	case AMS_ENOTDB:
	case AMS_EVERSION:
		return EXIT_USAGE;
	case AMS_EBUSY:
	case AMS_ELOCKED:
	case AMS_ETIMEDOUT:
		return EXIT_RETRY;
	default:
		return EXIT_FAIL;
	}
}

typedef struct subcmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
	const char *help; /* manual page text */
} subcmd;

static const char help_create[] =
	"NAME\n"
	"    amber-store create - create a new, empty store instance\n"
	"\n"
	"SYNOPSIS\n"
	"    amber-store create DIR [--prefix E00] [--page-size 8192] [--log-size 1M]\n"
	"                           [--db NAME.edb]... [--nocow]\n"
	"\n"
	"DESCRIPTION\n"
	"    Creates an instance (an Exchange storage group) in DIR: the first log\n"
	"    generation <prefix>.log, the checkpoint <prefix>.chk and the databases,\n"
	"    all in clean shutdown. DIR is created if it does not exist. It must\n"
	"    not already hold an instance.\n"
	"\n"
	"OPTIONS\n"
	"    --prefix XYZ      Log prefix (base name) of exactly 3 characters. The\n"
	"                      default is E00.\n"
	"    --page-size N     Database page size: 4096, 8192 (the default) or\n"
	"                      32768. K suffixes are accepted (8K).\n"
	"    --log-size N      Size of every log file: a multiple of 4096, at least\n"
	"                      64K. The default is 1M. K and M suffixes are accepted.\n"
	"    --db NAME.edb     Create this database. Repeat the option for up to 16\n"
	"                      databases. The default is priv1.edb and pub1.edb.\n"
	"    --nocow           btrfs only: give DIR the NOCOW attribute (chattr +C)\n"
	"                      before the files are made, so that they inherit it.\n"
	"                      Pages and log sectors are then overwritten in place\n"
	"                      instead of moving to new extents on every write: the\n"
	"                      databases stay unfragmented and read faster (a backup\n"
	"                      reads them whole), syncs write less. btrfs then keeps\n"
	"                      no checksums of these files (the store's own page and\n"
	"                      sector checksums and ECC stay), so a btrfs RAID1 can no\n"
	"                      longer tell a bad mirror by them; files restored into\n"
	"                      DIR inherit the attribute too. Refused on other\n"
	"                      filesystems (exit 2).\n"
	"\n"
	"EXIT STATUS\n"
	"    0 created; 1 creation failed (the message names the file); 2 bad usage,\n"
	"    or DIR already holds an instance.\n"
	"\n"
	"EXAMPLE\n"
	"    amber-store create /srv/mail/sg1 --db priv1.edb --db pub1.edb\n";

static const char help_serve[] =
	"NAME\n"
	"    amber-store serve - run an instance as an amber writer, optionally under\n"
	"    a mail-like load\n"
	"\n"
	"SYNOPSIS\n"
	"    amber-store serve DIR [--load RATE] [--oracle FILE] [--threads N]\n"
	"                          [--duration SEC] [--seed N] [--quiet]\n"
	"                          [--socket PATH] [--no-writer] [--max-hold-ms N]\n"
	"                          [--latency-log FILE] [--no-stream] [--steady]\n"
	"\n"
	"DESCRIPTION\n"
	"    Opens the instance in DIR, running soft recovery first if it was not\n"
	"    shut down cleanly. It then holds the instance open until SIGTERM or\n"
	"    SIGINT (or until --duration has passed) and shuts it down cleanly.\n"
	"\n"
	"    While it runs, the instance takes part in backups as the amber writer\n"
	"    'amber-store': it registers with amberd (one component per database,\n"
	"    with the instance's logs and checkpoint), rolls the log when a\n"
	"    snapshot is prepared and holds writes from freeze to thaw, at most\n"
	"    --max-hold-ms. When amberd is not running it keeps trying to reach it\n"
	"    in the background and serves as usual. The writer's identity is kept\n"
	"    in DIR/amber-writer.id (made on the first serve).\n"
	"\n"
	"    When a backup completes, the writer records it in the database headers\n"
	"    and, for a full or incremental backup whose components all succeeded,\n"
	"    deletes the logs no backup needs any more (a full: below the\n"
	"    checkpoint generation at the snapshot; an incremental: below the\n"
	"    generation that was current at the snapshot, which stays whole).\n"
	"    Nothing is recorded or deleted if a component failed.\n"
	"\n"
	"    A restore happens online, in place: pre-restore stops the load (after\n"
	"    its commits in flight) and closes the instance; serve keeps running.\n"
	"    post-restore runs hard recovery from DIR/restore.env, written by the\n"
	"    restore, and opens the instance again. The load resumes only if the\n"
	"    restore rolled forward to the end (roll_forward=yes, until=none). If\n"
	"    recovery fails the instance stays closed until another post-restore\n"
	"    succeeds or serve is stopped.\n"
	"\n"
	"    With --load it runs a mail-delivery workload: mailboxes are tables,\n"
	"    messages are values of 1 to 64 KiB, and some messages are deleted. With\n"
	"    --oracle it also appends to FILE, for every transaction, a line\n"
	"    'begin SEQ OP...' before the commit and 'ack SEQ' once the commit\n"
	"    returned. A checker can then prove that nothing acknowledged was lost\n"
	"    (see design.md section 7).\n"
	"\n"
	"OPTIONS\n"
	"    --load RATE       Transactions per second to attempt (0 = as fast as\n"
	"                      possible).\n"
	"    --oracle FILE     Append the oracle lines to FILE.\n"
	"    --threads N       Workload threads (1..256, default 4).\n"
	"    --duration SEC    Stop after SEC seconds.\n"
	"    --seed N          Seed for the workload's random choices.\n"
	"    --quiet, -q       No status or writer log lines.\n"
	"    --socket PATH     amberd's socket. The default is $AMBER_SOCKET, else\n"
	"                      /run/amber/amberd.sock.\n"
	"    --no-writer       Do not take part in backups.\n"
	"    --max-hold-ms N   Longest time writes may be held for a snapshot\n"
	"                      (1..600000, default 10000).\n"
	"    --latency-log FILE\n"
	"                      Write FILE (truncated first) with one line\n"
	"                      '<start_ns> <end_ns>' per successful commit of the\n"
	"                      workload (written at shutdown) and 'freeze <ns>' and\n"
	"                      'thaw <ns>' lines for every hold, in CLOCK_MONOTONIC\n"
	"                      nanoseconds. At most 16M commits are kept.\n"
	"    --no-stream       Do not answer streaming backups (amber backup\n"
	"                      --method stream) on DIR/.amber-stream.sock.\n"
	"    --steady          Every transaction deletes as many delivered messages\n"
	"                      as it delivers (while that many are left): a store\n"
	"                      at steady state, whose databases stop growing once\n"
	"                      freed pages are reused. Without it about one\n"
	"                      transaction in five deletes one or two messages, and\n"
	"                      the databases grow with the load.\n"
	"\n"
	"EXIT STATUS\n"
	"    0 clean shutdown; 1 failure (also a damaged amber-writer.id); 2 bad\n"
	"    usage; 3 the instance is in use.\n";

static const char help_check[] =
	"NAME\n"
	"    amber-store check - verify checksums (eseutil /k)\n"
	"\n"
	"SYNOPSIS\n"
	"    amber-store check FILE.edb\n"
	"    amber-store check LOGDIR [--prefix E00] [--all]\n"
	"    amber-store check FILE.log | FILE.chk\n"
	"\n"
	"DESCRIPTION\n"
	"    For a database file, reads every page and verifies its checksum, its\n"
	"    page number, its type and (for data and overflow pages) the layout of\n"
	"    its contents. Both header copies (pages 0 and 1) are checked as well.\n"
	"    Every damaged page is reported by number. A page with a single flipped\n"
	"    bit is reported as corrected ('page 17: bit 24032 was corrupted and\n"
	"    has been corrected') and does not fail the check. The correction is\n"
	"    made in memory only: check never writes to the file.\n"
	"\n"
	"    For a log directory, verifies every log file from the checkpoint's\n"
	"    generation on (or every log with --all, or when there is no\n"
	"    <prefix>.chk), and checks that they form one unbroken stream:\n"
	"    generations are contiguous, every log has the same log signature,\n"
	"    each log names the creation time of the one before it, and each\n"
	"    closed generation's valid data ends exactly where the next generation\n"
	"    starts. Only the newest generation may end in a torn write. The\n"
	"    checkpoint file itself is verified too.\n"
	"\n"
	"    A single .log or .chk file is verified on its own.\n"
	"\n"
	"    The summary gives the counts and the throughput. The last line reads\n"
	"    'Operation completed successfully in X seconds.' or 'Operation\n"
	"    terminated with error N (...) after X seconds.'\n"
	"\n"
	"OPTIONS\n"
	"    --prefix XYZ      Log prefix. The default is the prefix of the only\n"
	"                      *.chk file in LOGDIR, else E00.\n"
	"    --all             Check every log in LOGDIR, not only those from the\n"
	"                      checkpoint on.\n"
	"    --quiet, -q       Print only problems and the final line.\n"
	"\n"
	"EXIT STATUS\n"
	"    0 intact (single-bit errors corrected); 1 damage found, or a log is\n"
	"    missing; 2 bad usage or not an amber file.\n";

static const char help_header[] =
	"NAME\n"
	"    amber-store header - show a database header (eseutil /mh)\n"
	"\n"
	"SYNOPSIS\n"
	"    amber-store header FILE.edb [--json]\n"
	"\n"
	"DESCRIPTION\n"
	"    Prints the database header: the checksum status of both copies (pages\n"
	"    0 and 1), the format, the database and log signatures, the page size,\n"
	"    dbtime, the state (Just Created, Dirty Shutdown or Clean Shutdown),\n"
	"    Log Required, Log Committed, Last Consistent, Last Attach, Last Detach,\n"
	"    the page count, and the backup records: Previous Full, Incremental,\n"
	"    Differential and Copy Backup, Current Full Backup (set only in a\n"
	"    backup copy) and Current Shadow copy backup. Each backup record shows\n"
	"    its log generations 'Log Gen: lo-hi (0xlo-0xhi)', its mark time and\n"
	"    its kind (streaming or snapshot). The ECC fix and bad checksum\n"
	"    counters are shown last.\n"
	"\n"
	"    A database in Dirty Shutdown needs the logs from Log Required (decimal;\n"
	"    the hex form is in the log file names) to be mounted. One in Clean\n"
	"    Shutdown needs no logs.\n"
	"\n"
	"OPTIONS\n"
	"    --json            Print one JSON object instead.\n"
	"\n"
	"EXIT STATUS\n"
	"    0 printed (one damaged copy is reported but tolerated); 1 both copies\n"
	"    damaged or a read error; 2 bad usage or not an amber database.\n";

static const char help_checkpoint[] =
	"NAME\n"
	"    amber-store checkpoint - show a checkpoint file (eseutil /mk)\n"
	"\n"
	"SYNOPSIS\n"
	"    amber-store checkpoint FILE.chk [--json]\n"
	"\n"
	"DESCRIPTION\n"
	"    Prints the checkpoint: the generation and log stream offset (LSN) at\n"
	"    which recovery starts, the first log file recovery needs, the log\n"
	"    signature, the time it was written, the last full and incremental\n"
	"    backups, and the checksum status of both copies.\n"
	"\n"
	"OPTIONS\n"
	"    --json            Print one JSON object instead.\n"
	"\n"
	"EXIT STATUS\n"
	"    0 printed; 1 both copies damaged or a read error; 2 bad usage or not a\n"
	"    checkpoint file.\n";

static const char help_logs[] =
	"NAME\n"
	"    amber-store logs - list and verify the log files of a directory\n"
	"    (eseutil /ml)\n"
	"\n"
	"SYNOPSIS\n"
	"    amber-store logs LOGDIR [--prefix E00] [--json]\n"
	"\n"
	"DESCRIPTION\n"
	"    Prints one line per log file, oldest generation first: the file, the\n"
	"    generation in hex and decimal, the creation time, the start LSN, the\n"
	"    valid data segments, the end LSN and the status. The status is 'ok',\n"
	"    'torn tail' (a flush cut by a crash, never acknowledged) or 'DAMAGED\n"
	"    at segment N'. After the table it prints the log signature, and any\n"
	"    problems with the sequence (see amber-store check LOGDIR).\n"
	"\n"
	"OPTIONS\n"
	"    --prefix XYZ      Log prefix. The default is the prefix of the only\n"
	"                      *.chk file in LOGDIR, else E00.\n"
	"    --json            Print a JSON object with a 'logs' array instead.\n"
	"\n"
	"EXIT STATUS\n"
	"    0 every log is intact and in sequence; 1 damage or a gap; 2 bad usage.\n";

static const char help_recover[] =
	"NAME\n"
	"    amber-store recover - soft recovery (eseutil /r)\n"
	"\n"
	"SYNOPSIS\n"
	"    amber-store recover DIR [--prefix E00]\n"
	"\n"
	"DESCRIPTION\n"
	"    Replays the instance's log from the checkpoint, so that every committed\n"
	"    transaction is in the databases and none is half applied, and leaves\n"
	"    every database in Clean Shutdown. Running it again is harmless. It\n"
	"    prints the state of each database before and after.\n"
	"\n"
	"    A database restored from an online backup cannot be soft-recovered:\n"
	"    use hard-recover.\n"
	"\n"
	"EXIT STATUS\n"
	"    0 recovered; 1 failed (a log is missing or damaged: the message names\n"
	"    it); 2 bad usage or not an instance; 3 the instance is in use.\n";

static const char help_hard_recover[] =
	"NAME\n"
	"    amber-store hard-recover - recover databases restored from a backup\n"
	"\n"
	"SYNOPSIS\n"
	"    amber-store hard-recover DIR\n"
	"    amber-store hard-recover PATH/restore.env\n"
	"\n"
	"DESCRIPTION\n"
	"    Reads DIR/restore.env (format: docs/restore-env.md), written by the\n"
	"    restore. It replays the backup's logs (gen_low..gen_high in\n"
	"    backup_log_dir), then, unless roll_forward=no, every newer log of the\n"
	"    instance in unbroken sequence, stopping before the first transaction\n"
	"    committed after 'until' if set. The databases are left in Clean\n"
	"    Shutdown, and the outcome (status, error, time) is written back into\n"
	"    restore.env.\n"
	"\n"
	"EXIT STATUS\n"
	"    0 recovered; 1 failed (the message names the missing or damaged log);\n"
	"    2 restore.env malformed (the message names the line); 3 the instance\n"
	"    is in use.\n";

static const char help_dump[] =
	"NAME\n"
	"    amber-store dump - print every live record\n"
	"\n"
	"SYNOPSIS\n"
	"    amber-store dump DIR\n"
	"\n"
	"DESCRIPTION\n"
	"    Opens the instance as the engine would (recovering it if needed) and\n"
	"    prints one line per live record, '<table>\\t<key>\\t<sha256 of the\n"
	"    value>', sorted bytewise by table and then key. It is meant for\n"
	"    comparing an instance with the oracle after a crash, a shadow or a\n"
	"    restore. Bytes outside '!'..'~' and the backslash are written as\n"
	"    \\xHH.\n"
	"\n"
	"EXIT STATUS\n"
	"    0 printed; 1 failure; 2 bad usage; 3 the instance is in use.\n";

static const subcmd cmds[] = {
	{"create", cmd_create, "create a new instance", help_create},
	{"serve", cmd_serve, "run an instance as a writer, optionally under load", help_serve},
	{"check", cmd_check, "verify a database, a log directory or a checkpoint", help_check},
	{"header", cmd_header, "show a database header", help_header},
	{"checkpoint", cmd_checkpoint, "show a checkpoint file", help_checkpoint},
	{"logs", cmd_logs, "list and verify log files", help_logs},
	{"recover", cmd_recover, "soft recovery of an instance", help_recover},
	{"hard-recover", cmd_hard_recover, "recover a restored instance (restore.env)",
	 help_hard_recover},
	{"dump", cmd_dump, "print every live record", help_dump},
};

#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: amber-store COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < NCMDS; i++)
		fprintf(f, "  %-14s %s\n", cmds[i].name, cmds[i].summary);
	fprintf(f, "\n'amber-store COMMAND --help' describes a command.\n"
	           "Exit status: 0 success, 1 damaged or failed, 2 bad usage or input, "
	           "3 retryable (busy, timeout).\n");
}

static const subcmd *find(const char *name)
{
	for (size_t i = 0; i < NCMDS; i++)
		if (strcmp(cmds[i].name, name) == 0)
			return &cmds[i];
	return NULL;
}

int main(int argc, char **argv)
{
	/* errors go to stderr as they happen: keep stdout in step with it */
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	if (strcmp(name, "--version") == 0) {
		printf("amber-store %s\n", AMBER_VERSION);
		return EXIT_OK;
	}
	if (strcmp(name, "help") == 0) {
		if (argc < 3) {
			usage(stdout);
			return EXIT_OK;
		}
		const subcmd *c = find(argv[2]);
		if (!c) {
			fprintf(stderr, "amber-store: unknown command '%s'\n", argv[2]);
			usage(stderr);
			return EXIT_USAGE;
		}
		fputs(c->help, stdout);
		return EXIT_OK;
	}
	const subcmd *c = find(name);
	if (!c) {
		fprintf(stderr, "amber-store: unknown command '%s'\n", name);
		usage(stderr);
		return EXIT_USAGE;
	}
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(c->help, stdout);
			return EXIT_OK;
		}
	}
	return c->fn(argc - 1, argv + 1);
}
