/* samples.c - see samples.h */
#include "samples.h"

#define U_INST "0b7e5a52-1c7d-4f5e-9a3b-2d6c8e1f4a90"
#define U_SESS "5f0c2e9a-8d41-4b6e-a7c3-19e2f0d4b581"
#define U_SET "c3a1f8e2-6b0d-4d9c-8e57-a2b4c6d8e0f1"
#define U_SH1 "9d8c7b6a-5f4e-4d3c-b2a1-0f9e8d7c6b5a"
#define U_SH2 "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"

#define MD_FULL \
	"{\"name\":\"amber-store\",\"instance\":\"" U_INST "\"," \
	"\"instance_name\":\"E00 at /srv/mail\"," \
	"\"backup_types\":[\"full\",\"copy\",\"incremental\",\"differential\"]," \
	"\"verifier\":\"amber-store\",\"restore_method\":\"stop-restore-start\"," \
	"\"max_hold_ms\":5000,\"components\":[" \
	"{\"name\":\"db1\",\"type\":\"database\"," \
	"\"files\":[{\"path\":\"/srv/mail\",\"pattern\":\"db1.edb\"}]," \
	"\"logs\":[{\"path\":\"/srv/mail\",\"pattern\":\"E00*.log\"}]," \
	"\"checkpoint\":\"/srv/mail/E00.chk\"}," \
	"{\"name\":\"attachments\",\"type\":\"filegroup\",\"selectable\":false," \
	"\"files\":[{\"path\":\"/srv/mail/att\",\"pattern\":\"*\",\"recursive\":true}]}]," \
	"\"excludes\":[{\"path\":\"/srv/mail\",\"pattern\":\"*.tmp\"}]}"

#define MD_MIN \
	"{\"name\":\"pg\",\"instance\":\"" U_SH2 "\",\"backup_types\":[\"full\"]," \
	"\"verifier\":\"none\",\"restore_method\":\"custom\",\"max_hold_ms\":10000," \
	"\"components\":[]}"

#define SHADOW \
	"{\"id\":\"" U_SH1 "\",\"set\":\"" U_SET "\",\"volume\":\"/srv\"," \
	"\"path\":\"/srv/.amber/" U_SH1 "\",\"provider\":\"btrfs\",\"persistent\":true," \
	"\"writers\":true,\"created\":1767225600000,\"exposed\":\"/mnt/shadow1\"}"

#define EVENT_FIELDS \
	"\"seq\":42,\"time\":1767225600123,\"code\":2006," \
	"\"severity\":\"error\",\"message\":\"writer amber-store did not answer freeze within " \
	"10000 ms\"," \
	"\"session\":\"" U_SESS "\",\"set\":\"" U_SET "\",\"shadow\":\"" U_SH1 "\"," \
	"\"writer\":\"amber-store\",\"component\":\"db1\",\"volume\":\"/srv\"," \
	"\"class\":\"timeout\""

const amb_sample amb_samples[] = {
	/* connection */
	{ "{\"kind\":\"hello\",\"id\":1,\"version\":1,\"min_version\":1,\"role\":\"writer\","
	  "\"name\":\"amber-store\",\"pid\":4242}", 1 },
	{ "{\"kind\":\"hello\",\"id\":1,\"version\":3,\"role\":\"admin\",\"name\":\"amber\","
	  "\"pid\":1}", 1 },
	{ "{\"kind\":\"welcome\",\"id\":1,\"version\":1,\"server\":\"amberd\","
	  "\"server_version\":\"0.1.0\","
	  "\"max_message\":1048576,\"hold_ms\":10000,\"event_timeout_ms\":60000}", 1 },
	{ "{\"kind\":\"ok\",\"id\":7}", 1 },
	{ "{\"kind\":\"error\",\"id\":7,\"exit\":\"retryable\",\"class\":\"timeout\","
	  "\"message\":\"writer amber-store did not answer freeze in 10000 ms\","
	  "\"field\":\"session\"}", 1 },
	{ "{\"kind\":\"error\",\"exit\":\"bad-input\",\"message\":\"json: end of file expected at "
	  "byte 12\"}", 1 },
	{ "{\"kind\":\"error\",\"id\":9007199254740991,\"exit\":\"failed\","
	  "\"message\":\"Datenbank \xe2\x80\x9c" "db1\xe2\x80\x9d \xc3\xbc" "bersprungen\"}", 1 },
	/* writer */
	{ "{\"kind\":\"register\",\"id\":2,\"metadata\":" MD_FULL "}", 1 },
	{ "{\"kind\":\"register\",\"id\":2,\"metadata\":" MD_MIN "}", 1 },
	{ "{\"kind\":\"unregister\",\"id\":3}", 1 },
	/* writer events */
	{ "{\"kind\":\"identify\",\"id\":10,\"session\":\"" U_SESS "\"}", 1 },
	{ "{\"kind\":\"identify\",\"id\":10}", 1 },
	{ "{\"kind\":\"prepare-backup\",\"id\":11,\"session\":\"" U_SESS "\","
	  "\"backup_type\":\"full\","
	  "\"components\":[{\"name\":\"db1\"},{\"name\":\"attachments\"}],"
	  "\"volumes\":[\"/srv\",\"/var/lib/pg\"]}", 1 },
	{ "{\"kind\":\"prepare-backup\",\"id\":11,\"session\":\"" U_SESS "\","
	  "\"backup_type\":\"copy\"}", 1 },
	{ "{\"kind\":\"prepare-snapshot\",\"id\":12,\"session\":\"" U_SESS "\","
	  "\"set\":\"" U_SET "\","
	  "\"volumes\":[\"/srv\"]}", 1 },
	{ "{\"kind\":\"freeze\",\"id\":13,\"session\":\"" U_SESS "\",\"set\":\"" U_SET "\","
	  "\"hold_ms\":10000}", 1 },
	{ "{\"kind\":\"thaw\",\"id\":14,\"session\":\"" U_SESS "\",\"set\":\"" U_SET "\"}", 1 },
	{ "{\"kind\":\"post-snapshot\",\"id\":15,\"session\":\"" U_SESS "\",\"set\":\"" U_SET "\","
	  "\"shadows\":[{\"volume\":\"/srv\",\"path\":\"/srv/.amber/" U_SH1 "\"}]}", 1 },
	{ "{\"kind\":\"backup-complete\",\"id\":16,\"session\":\"" U_SESS "\","
	  "\"backup_type\":\"incremental\","
	  "\"components\":[{\"name\":\"db1\",\"success\":true},{\"name\":\"attachments\","
	  "\"success\":false}]}", 1 },
	{ "{\"kind\":\"abort\",\"id\":17,\"session\":\"" U_SESS "\",\"set\":\"" U_SET "\","
	  "\"class\":\"timeout\","
	  "\"message\":\"hold deadline of 10000 ms exceeded\"}", 1 },
	{ "{\"kind\":\"abort\",\"id\":17,\"session\":\"" U_SESS "\"}", 1 },
	{ "{\"kind\":\"pre-restore\",\"id\":18,\"session\":\"" U_SESS "\","
	  "\"components\":[{\"name\":\"db1\",\"target\":\"/srv/restore\"},"
	  "{\"name\":\"attachments\"}]}", 1 },
	{ "{\"kind\":\"post-restore\",\"id\":19,\"session\":\"" U_SESS "\","
	  "\"components\":[{\"name\":\"db1\",\"success\":true}]}", 1 },
	/* replies */
	{ "{\"kind\":\"reply\",\"id\":13,\"event\":\"freeze\",\"status\":\"ok\"}", 1 },
	{ "{\"kind\":\"reply\",\"id\":14,\"event\":\"freeze\",\"status\":\"ok\","
	  "\"unchanged\":[\"/srv/mail/sg1/priv1.edb\",\"/srv/mail/sg1/pub1.edb\"]}", 1 },
	{ "{\"kind\":\"reply\",\"id\":13,\"event\":\"freeze\",\"status\":\"failed\","
	  "\"class\":\"retryable\","
	  "\"message\":\"log roll failed: disk full\"}", 1 },
	{ "{\"kind\":\"reply\",\"id\":15,\"event\":\"post-snapshot\",\"status\":\"ok\","
	  "\"held_writes\":true}", 1 },
	{ "{\"kind\":\"reply\",\"id\":15,\"event\":\"post-snapshot\",\"status\":\"ok\","
	  "\"held_writes\":false}", 1 },
	{ "{\"kind\":\"reply\",\"id\":10,\"event\":\"identify\",\"status\":\"ok\","
	  "\"metadata\":" MD_FULL "}", 1 },
	{ "{\"kind\":\"reply\",\"id\":10,\"event\":\"identify\",\"status\":\"failed\","
	  "\"class\":\"non-retryable\"}", 1 },
	/* sessions */
	{ "{\"kind\":\"session-open\",\"id\":20,\"mode\":\"backup\",\"backup_type\":\"full\","
	  "\"persistent\":true,\"no_writers\":true,\"provider\":\"btrfs\"}", 1 },
	{ "{\"kind\":\"session-open\",\"id\":20,\"mode\":\"restore\"}", 1 },
	{ "{\"kind\":\"session\",\"id\":20,\"session\":\"" U_SESS "\",\"set\":\"" U_SET "\"}", 1 },
	{ "{\"kind\":\"session-gather\",\"id\":21,\"session\":\"" U_SESS "\"}", 1 },
	{ "{\"kind\":\"session-select\",\"id\":22,\"session\":\"" U_SESS "\","
	  "\"writer\":\"amber-store\","
	  "\"component\":\"db1\",\"mode\":\"verify\"}", 1 },
	{ "{\"kind\":\"session-select\",\"id\":22,\"session\":\"" U_SESS "\",\"writer\":\"pg\","
	  "\"mode\":\"exclude\"}", 1 },
	{ "{\"kind\":\"session-add-volume\",\"id\":23,\"session\":\"" U_SESS "\","
	  "\"volume\":\"/srv\","
	  "\"provider\":\"reflink\"}", 1 },
	{ "{\"kind\":\"session-snapshot\",\"id\":24,\"session\":\"" U_SESS "\"}", 1 },
	{ "{\"kind\":\"session-backup-complete\",\"id\":25,\"session\":\"" U_SESS "\","
	  "\"results\":["
	  "{\"writer\":\"amber-store\",\"component\":\"db1\",\"success\":true},"
	  "{\"writer\":\"amber-store\",\"component\":\"attachments\",\"success\":false}]}", 1 },
	{ "{\"kind\":\"session-abort\",\"id\":26,\"session\":\"" U_SESS "\","
	  "\"message\":\"operator cancelled\"}", 1 },
	{ "{\"kind\":\"session-pre-restore\",\"id\":27,\"session\":\"" U_SESS "\",\"components\":["
	  "{\"writer\":\"amber-store\",\"component\":\"db1\",\"target\":\"/srv/restore\"},"
	  "{\"writer\":\"amber-store\",\"component\":\"attachments\"}]}", 1 },
	{ "{\"kind\":\"session-post-restore\",\"id\":28,\"session\":\"" U_SESS "\",\"results\":["
	  "{\"writer\":\"amber-store\",\"component\":\"db1\",\"success\":true}]}", 1 },
	{ "{\"kind\":\"session-close\",\"id\":29,\"session\":\"" U_SESS "\"}", 1 },
	/* listings */
	{ "{\"kind\":\"list-writers\",\"id\":30}", 1 },
	{ "{\"kind\":\"writer-list\",\"id\":30,\"writers\":["
	  "{\"metadata\":" MD_FULL ",\"state\":\"failed-at-freeze\","
	  "\"last_error\":{\"class\":\"timeout\",\"message\":\"no answer in 10000 ms\"},"
	  "\"pid\":4242,\"uid\":1000},"
	  "{\"metadata\":" MD_MIN ",\"state\":\"stable\",\"pid\":77,\"uid\":0}]}", 1 },
	{ "{\"kind\":\"writer-list\",\"id\":30,\"writers\":[]}", 1 },
	{ "{\"kind\":\"list-providers\",\"id\":31}", 1 },
	{ "{\"kind\":\"provider-list\",\"id\":31,\"providers\":["
	  "{\"name\":\"btrfs\",\"description\":\"read-only btrfs subvolume snapshot\","
	  "\"holds_writes\":false},"
	  "{\"name\":\"copy\",\"description\":\"plain copy; holds writes for the whole copy\","
	  "\"holds_writes\":true}]}", 1 },
	{ "{\"kind\":\"list-shadows\",\"id\":32,\"set\":\"" U_SET "\",\"volume\":\"/srv\","
	  "\"offset\":10,"
	  "\"limit\":100}", 1 },
	{ "{\"kind\":\"list-shadows\",\"id\":32}", 1 },
	{ "{\"kind\":\"shadow-list\",\"id\":32,\"total\":11,\"shadows\":[" SHADOW "]}", 1 },
	{ "{\"kind\":\"list-shadowstorage\",\"id\":33}", 1 },
	{ "{\"kind\":\"shadowstorage-list\",\"id\":33,\"storage\":["
	  "{\"volume\":\"/srv\",\"used\":1073741824,\"limit\":0},"
	  "{\"volume\":\"/\",\"used\":0,\"limit\":9007199254740991}]}", 1 },
	/* shadows */
	{ "{\"kind\":\"shadow-create\",\"id\":34,\"volumes\":[\"/srv\",\"/var/lib/pg\"],"
	  "\"persistent\":true,"
	  "\"no_writers\":true,\"provider\":\"reflink\"}", 1 },
	{ "{\"kind\":\"shadow-create\",\"id\":34,\"volumes\":[\"/\"]}", 1 },
	{ "{\"kind\":\"snapshot-set\",\"id\":34,\"set\":\"" U_SET "\","
	  "\"shadows\":[" SHADOW "]}", 1 },
	{ "{\"kind\":\"snapshot-set\",\"id\":34,\"set\":\"" U_SET "\","
	  "\"shadows\":[" SHADOW "],\"writers\":[\"" U_INST "\"]}", 1 },
	{ "{\"kind\":\"shadow-delete\",\"id\":35,\"all\":true}", 1 },
	{ "{\"kind\":\"shadow-delete\",\"id\":35,\"oldest\":\"/srv\"}", 1 },
	{ "{\"kind\":\"shadow-delete\",\"id\":35,\"shadow\":\"" U_SH1 "\"}", 1 },
	{ "{\"kind\":\"shadow-delete\",\"id\":35,\"set\":\"" U_SET "\"}", 1 },
	{ "{\"kind\":\"shadow-delete\",\"id\":35,\"exposed\":\"/mnt/shadow1\"}", 1 },
	{ "{\"kind\":\"deleted\",\"id\":35,\"shadows\":[\"" U_SH1 "\",\"" U_SH2 "\"]}", 1 },
	{ "{\"kind\":\"shadow-expose\",\"id\":36,\"shadow\":\"" U_SH1 "\","
	  "\"path\":\"/mnt/shadow1\"}", 1 },
	{ "{\"kind\":\"shadow-unexpose\",\"id\":37,\"path\":\"/mnt/shadow1\"}", 1 },
	/* events */
	{ "{\"kind\":\"events-list\",\"id\":38,\"since\":0,\"limit\":100}", 1 },
	{ "{\"kind\":\"events-list\",\"id\":38}", 1 },
	{ "{\"kind\":\"event-list\",\"id\":38,\"events\":[{" EVENT_FIELDS "}]}", 1 },
	{ "{\"kind\":\"events-follow\",\"id\":39,\"since\":41}", 1 },
	{ "{\"kind\":\"events-follow\",\"id\":39}", 1 },
	{ "{\"kind\":\"event\"," EVENT_FIELDS "}", 1 },
	{ "{\"kind\":\"event\",\"seq\":1,\"time\":0,\"code\":4001,\"severity\":\"info\","
	  "\"message\":\"amberd started\"}", 1 },
	/* not canonical: defaults spelled out, other key order, white space */
	{ "{ \"id\": 5, \"kind\": \"register\", \"metadata\": {\"name\": \"w\", \"instance\": "
	  "\"" U_INST "\","
	  " \"backup_types\": [\"copy\", \"full\"], \"verifier\": \"none\", \"restore_method\": "
	  "\"if-not-there\","
	  " \"max_hold_ms\": 1, \"components\": [{\"name\": \"c\", \"type\": \"filegroup\", "
	  "\"selectable\": true,"
	  " \"files\": [{\"path\": \"/\", \"pattern\": \"*\", \"recursive\": false}], \"logs\": "
	  "[]}],"
	  " \"excludes\": []}}\n", 0 },
	{ "{\"kind\":\"shadow-delete\",\"id\":35,\"all\":false,\"set\":\"" U_SET "\"}", 0 },
	{ "{\"kind\":\"session-open\",\"id\":20,\"mode\":\"backup\","
	  "\"backup_type\":\"differential\","
	  "\"persistent\":false,\"no_writers\":false}", 0 },
};

const size_t amb_n_samples = sizeof(amb_samples) / sizeof(amb_samples[0]);
