"""Every limit Sapwood enforces, in one place. Each is checked with a clear error."""

# Objects and siblings (Riak's defaults).
MAX_OBJECT_BYTES = 50 * 1024 * 1024
WARN_OBJECT_BYTES = 5 * 1024 * 1024
MAX_SIBLINGS = 100
WARN_SIBLINGS = 25

# Names.
MAX_KEY_BYTES = 8 * 1024
MAX_BUCKET_BYTES = 1024
MAX_TYPE_BYTES = 255

# Metadata carried per object.
MAX_USERMETA_ENTRIES = 256
MAX_INDEX_ENTRIES = 1024
MAX_INDEX_TERM_BYTES = 1024
MAX_LINKS = 1024

# Queries.
MAX_RESULTS_PAGE = 100_000
MAX_TERM_REGEX_BYTES = 1024

# Requests.
DEFAULT_TIMEOUT_MS = 60_000
MAX_TIMEOUT_MS = 600_000

# Bucket properties.
MAX_N_VAL = 16
MAX_PROPS_BYTES = 64 * 1024
