"""SQL for the hot path, generated from engine/eventlog/schema.py by `make sql`.

Do not edit: tests/eventlog/test_sql.py fails when this file is stale.
"""

EVENT_COLUMNS = ('id', 'container_id', 'seq', 'time_ns', 'trigger', 'source', 'dest', 'outcome', 'actor_uid', 'actor_pid', 'actor_transport', 'payload', 'machine_digest')
CONTAINER_COLUMNS = ('id', 'state', 'seq', 'created_ns', 'updated_ns', 'machine_digest')

# Alembic revisions this runlog knows, oldest first; the last is the head.
REVISIONS = ('0001',)

# The schema at the head revision, for a new database.
SCHEMA_DDL = (
    'CREATE TABLE containers (\n\tid VARCHAR(1024) NOT NULL, \n\tstate VARCHAR(32), \n\tseq INTEGER NOT NULL, \n\tcreated_ns BIGINT NOT NULL, \n\tupdated_ns BIGINT NOT NULL, \n\tmachine_digest VARCHAR(64) NOT NULL, \n\tCONSTRAINT pk_containers PRIMARY KEY (id)\n)',
    'CREATE INDEX ix_containers_state ON containers (state)',
    'CREATE TABLE events (\n\tid INTEGER NOT NULL, \n\tcontainer_id VARCHAR(1024) NOT NULL, \n\tseq INTEGER NOT NULL, \n\ttime_ns BIGINT NOT NULL, \n\t"trigger" VARCHAR(64) NOT NULL, \n\tsource VARCHAR(32), \n\tdest VARCHAR(32), \n\toutcome VARCHAR(16) NOT NULL, \n\tactor_uid INTEGER, \n\tactor_pid INTEGER, \n\tactor_transport VARCHAR(16) NOT NULL, \n\tpayload TEXT NOT NULL, \n\tmachine_digest VARCHAR(64) NOT NULL, \n\tCONSTRAINT pk_events PRIMARY KEY (id), \n\tCONSTRAINT uq_events_container_id_seq UNIQUE (container_id, seq), \n\tCONSTRAINT ck_events_outcome CHECK (outcome IN (\'ok\', \'rejected\', \'failed\')), \n\tCONSTRAINT ck_events_seq_positive CHECK (seq > 0)\n)',
    'CREATE INDEX ix_events_time_ns ON events (time_ns)',
)

CREATE_VERSION_TABLE = 'CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))'
INSERT_VERSION = 'INSERT INTO alembic_version (version_num) VALUES (?)'
SELECT_VERSION = 'SELECT version_num FROM alembic_version'

INSERT_EVENT = 'INSERT INTO events (container_id, seq, time_ns, "trigger", source, dest, outcome, actor_uid, actor_pid, actor_transport, payload, machine_digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'
SELECT_HEAD = 'SELECT containers.seq, containers.state FROM containers WHERE containers.id = ?'
UPSERT_CONTAINER = 'INSERT INTO containers (id, state, seq, created_ns, updated_ns, machine_digest) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET state = coalesce(excluded.state, containers.state), seq = excluded.seq, updated_ns = excluded.updated_ns, machine_digest = excluded.machine_digest'
SELECT_HISTORY = 'SELECT events.id, events.container_id, events.seq, events.time_ns, events."trigger", events.source, events.dest, events.outcome, events.actor_uid, events.actor_pid, events.actor_transport, events.payload, events.machine_digest FROM events WHERE events.container_id = ? AND events.seq > ? ORDER BY events.seq'
SELECT_EVENTS_AFTER = 'SELECT events.id, events.container_id, events.seq, events.time_ns, events."trigger", events.source, events.dest, events.outcome, events.actor_uid, events.actor_pid, events.actor_transport, events.payload, events.machine_digest FROM events WHERE events.id > ? ORDER BY events.id'
SELECT_CONTAINER = 'SELECT containers.id, containers.state, containers.seq, containers.created_ns, containers.updated_ns, containers.machine_digest FROM containers WHERE containers.id = ?'
SELECT_CONTAINERS = 'SELECT containers.id, containers.state, containers.seq, containers.created_ns, containers.updated_ns, containers.machine_digest FROM containers ORDER BY containers.id'
