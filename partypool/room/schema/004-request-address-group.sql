-- Version 4: requests per day are counted by address group (an IPv6 /64, an
-- IPv4 address itself), as every other per-address rule counts; the exact
-- address stays in "address" for the administrator's list.  address_group()
-- is partypool.room.addresses.address_group, given to SQLite by migrate().
ALTER TABLE requests ADD COLUMN address_group TEXT NOT NULL DEFAULT '';
UPDATE requests SET address_group = address_group(address);
DROP INDEX requests_by_address;
CREATE INDEX requests_by_address_group ON requests (address_group, created_at);
