-- Memories: what a companion remembers about each of its users, their vectors, relations and history.
--
-- Every table carries companion_id and user_id and sits under forced row-level security with the same
-- tenant predicate as companion_users (0002): the app role sees a row only inside a transaction whose
-- context names its companion and its user (or '*', companion-wide). No context, no rows.
--
-- Policies for the app role come in pairs: a permissive one that grants the tenant's rows and a
-- restrictive one with the same predicate, so a permissive policy added later (analytics, upkeep) can
-- widen nothing beyond the tenant.

CREATE TABLE memories (
    id                   uuid PRIMARY KEY,
    companion_id         uuid NOT NULL REFERENCES companions (id) ON DELETE CASCADE,
    user_id              text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 200 AND user_id <> '*'),
    type                 text NOT NULL
                         CHECK (type IN ('fact', 'preference', 'experience', 'instruction', 'reflection')),
    -- Strict companions keep content (and summary) only sealed (AES-256-GCM, companion data key):
    -- content and summary are then NULL, so neither they nor the keyword index hold plaintext.
    content              text CHECK (length(content) BETWEEN 1 AND 10000),
    content_sealed       bytea,
    summary              text CHECK (length(summary) <= 500),
    metadata             jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    importance           real NOT NULL CHECK (importance BETWEEN 0 AND 10),
    confidence           real NOT NULL DEFAULT 1 CHECK (confidence BETWEEN 0 AND 1),
    occurred_at          timestamptz NOT NULL,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    accessed_at          timestamptz,
    access_count         bigint NOT NULL DEFAULT 0 CHECK (access_count >= 0),
    reinforcement_count  integer NOT NULL DEFAULT 0 CHECK (reinforcement_count >= 0),
    expires_at           timestamptz,
    archived_at          timestamptz,
    forgotten_at         timestamptz,
    purge_after          timestamptz,
    version              integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    -- The model whose vector matches the current content (other models' vectors may exist beside it).
    embedding_model      text,
    -- 'english' stems (likes/liked -> like) and drops stop words; keyword recall is measured against
    -- 'simple' on the retrieval benchmark (bench/retrieval) before this is revisited.
    search               tsvector GENERATED ALWAYS AS (
                             to_tsvector('english'::regconfig, coalesce(content, '') || ' ' || coalesce(summary, ''))
                         ) STORED,
    CHECK ((content IS NULL) <> (content_sealed IS NULL)),
    CHECK (content_sealed IS NULL OR summary IS NULL),
    CHECK ((forgotten_at IS NULL) = (purge_after IS NULL))
);

-- Per-user access paths: listing pages (newest first, id as tie-break) and the filtered candidate scan
-- of recall, which reads a user's live rows only.
CREATE INDEX memories_user_created ON memories (companion_id, user_id, created_at DESC, id DESC);
CREATE INDEX memories_user_live ON memories (companion_id, user_id, type, occurred_at)
    WHERE forgotten_at IS NULL AND archived_at IS NULL;
CREATE INDEX memories_search ON memories USING gin (search);
CREATE INDEX memories_purge ON memories (purge_after) WHERE forgotten_at IS NOT NULL;

CREATE TABLE memory_embeddings (
    memory_id     uuid NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    companion_id  uuid NOT NULL,
    user_id       text NOT NULL,
    model         text NOT NULL CHECK (length(model) BETWEEN 1 AND 200),
    -- No fixed dimension: vectors of several models (different sizes) coexist while a model change
    -- re-embeds in the background; each model gets its own partial HNSW index below.
    embedding     vector NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (memory_id, model)
);
CREATE INDEX memory_embeddings_user ON memory_embeddings (companion_id, user_id, model);

-- The approximate index of one model, for companion-wide search. Per-user recall never uses it: it
-- orders by the un-cast column, which no index matches, so it stays exact. A query uses the index
-- when it orders by (embedding::vector(<dims>)) <=> ... and says model = '<model>' as a literal.
-- The DDL is built here only, so the migration and `companion-memory embedding-index` name indexes
-- alike; the CLI runs it CONCURRENTLY as the owner, so adding a model never blocks writes.
CREATE FUNCTION memory_embedding_index_sql(model text, dims integer, build_concurrently boolean DEFAULT false)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS
$$
BEGIN
    IF model IS NULL OR length(model) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'model name must have 1 to 200 characters';
    END IF;
    IF dims IS NULL OR dims NOT BETWEEN 1 AND 2000 THEN
        RAISE EXCEPTION 'an HNSW index on vector supports 1 to 2000 dimensions, not %', dims;
    END IF;
    RETURN format(
        'CREATE INDEX %s IF NOT EXISTS %I ON memory_embeddings USING hnsw ((embedding::vector(%s)) vector_cosine_ops) WHERE model = %L',
        CASE WHEN build_concurrently THEN 'CONCURRENTLY' ELSE '' END,
        'memory_embeddings_hnsw_' || left(md5(model), 12) || '_' || dims,
        dims,
        model
    );
END
$$;

DO $$
BEGIN
    -- The local default (multilingual-e5-small, 4-bit, 384 dims) and Bedrock Titan Text
    -- Embeddings V2 at its default 1024 dims; the embedder adapters record these model ids.
    EXECUTE memory_embedding_index_sql('local:multilingual-e5-small-q4:384', 384);
    EXECUTE memory_embedding_index_sql('bedrock:amazon.titan-embed-text-v2:0:1024', 1024);
END
$$;

CREATE TABLE memory_relations (
    id            uuid PRIMARY KEY,
    companion_id  uuid NOT NULL,
    user_id       text NOT NULL,
    source_id     uuid NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    target_id     uuid NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    type          text NOT NULL CHECK (type IN ('follows', 'contradicts', 'elaborates', 'corrects', 'references',
                                                'causes', 'consolidated_into', 'related_to')),
    metadata      jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    created_at    timestamptz NOT NULL,
    CHECK (source_id <> target_id),
    UNIQUE (source_id, target_id, type)
);
CREATE INDEX memory_relations_target ON memory_relations (target_id);

-- Append-only audit of every change to a memory. Snapshots never hold vectors, and a sealed memory's
-- snapshot holds its ciphertext (base64), never the plaintext. Rows go when their memory is purged.
CREATE TABLE memory_history (
    id            uuid PRIMARY KEY,
    memory_id     uuid NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    companion_id  uuid NOT NULL,
    user_id       text NOT NULL,
    version       integer NOT NULL,
    change        text NOT NULL
                  CHECK (change IN ('created', 'reinforced', 'updated', 'forgotten', 'restored', 'archived')),
    snapshot      jsonb NOT NULL CHECK (jsonb_typeof(snapshot) = 'object'),
    actor         text NOT NULL,
    at            timestamptz NOT NULL
);
CREATE INDEX memory_history_memory ON memory_history (memory_id, at);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['memories', 'memory_embeddings', 'memory_relations', 'memory_history'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY %I ON %I TO companion_app '
            'USING (companion_id = app_companion_id() AND app_user_in_scope(user_id)) '
            'WITH CHECK (companion_id = app_companion_id() AND app_user_in_scope(user_id))',
            t || '_tenant', t);
        EXECUTE format(
            'CREATE POLICY %I ON %I AS RESTRICTIVE TO companion_app '
            'USING (companion_id = app_companion_id() AND app_user_in_scope(user_id)) '
            'WITH CHECK (companion_id = app_companion_id() AND app_user_in_scope(user_id))',
            t || '_tenant_guard', t);
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON memories, memory_embeddings, memory_relations TO companion_app;
-- History is append-only for the application: no UPDATE, no DELETE (rows leave only by the cascade of
-- a purge, which runs as the table owner).
REVOKE UPDATE, DELETE, TRUNCATE ON memory_history FROM companion_app;
GRANT SELECT, INSERT ON memory_history TO companion_app;

-- Hard delete after the grace period, across every tenant, for the upkeep schedule. The app role has
-- no context that spans tenants, so this narrow function runs as the owner; the owner's own policies
-- (below) let it see and delete only forgotten rows whose grace has passed, and a cutoff in the
-- future is clamped to now, so no caller can shorten the grace period.
CREATE POLICY memories_purge_read ON memories FOR SELECT TO CURRENT_USER
    USING (forgotten_at IS NOT NULL AND purge_after <= now());
CREATE POLICY memories_purge_delete ON memories FOR DELETE TO CURRENT_USER
    USING (forgotten_at IS NOT NULL AND purge_after <= now());

CREATE FUNCTION purge_forgotten_memories(cutoff timestamptz, max_rows integer DEFAULT 10000)
RETURNS bigint LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS
$$
    WITH purged AS (
        DELETE FROM memories
        WHERE id IN (
            SELECT id FROM memories
            WHERE forgotten_at IS NOT NULL AND purge_after <= least(cutoff, now())
            ORDER BY purge_after
            LIMIT greatest(max_rows, 0)
        )
        RETURNING 1
    )
    SELECT count(*) FROM purged
$$;
REVOKE ALL ON FUNCTION purge_forgotten_memories(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION purge_forgotten_memories(timestamptz, integer) TO companion_app;
