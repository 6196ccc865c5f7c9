-- Access-log number hashes are kept to their first 128 bits (32 hex digits): as unique in
-- practice, and a smaller index to insert an audit's million lookups into.
UPDATE access_log SET number_hash = substr(number_hash, 1, 32) WHERE length(number_hash) > 32;
