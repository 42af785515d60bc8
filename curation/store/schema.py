"""The workspace's tables: each entry of MIGRATIONS moves the schema one version on (core.py applies them)."""

# Each entry migrates the schema from version i to i+1. Append only; never edit a shipped entry.
MIGRATIONS = [
    """
    CREATE SEQUENCE task_id_seq START 1;
    CREATE TABLE tasks (
        id BIGINT PRIMARY KEY DEFAULT nextval('task_id_seq'),
        instruction VARCHAR NOT NULL,
        input VARCHAR,
        system_prompt VARCHAR,
        source VARCHAR NOT NULL DEFAULT 'seed',
        parent_id BIGINT,
        skill VARCHAR,
        domain VARCHAR,
        split VARCHAR NOT NULL DEFAULT 'train',
        created_at TIMESTAMP NOT NULL DEFAULT now()
    );
    CREATE SEQUENCE generation_id_seq START 1;
    CREATE TABLE generations (
        id BIGINT PRIMARY KEY DEFAULT nextval('generation_id_seq'),
        task_id BIGINT NOT NULL,
        run_id BIGINT,
        request_key VARCHAR NOT NULL UNIQUE,
        endpoint VARCHAR NOT NULL,
        model VARCHAR NOT NULL,
        messages VARCHAR NOT NULL,
        params VARCHAR NOT NULL,
        sample_index INTEGER NOT NULL,
        teacher_only_system BOOLEAN NOT NULL DEFAULT false,
        response VARCHAR,
        finish_reason VARCHAR,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        latency_s DOUBLE,
        status VARCHAR NOT NULL,
        error VARCHAR,
        attempts INTEGER NOT NULL DEFAULT 1,
        created_at TIMESTAMP NOT NULL DEFAULT now()
    );
    CREATE TABLE labels (
        generation_id BIGINT PRIMARY KEY,
        status VARCHAR NOT NULL,
        edited_response VARCHAR,
        tags VARCHAR,
        note VARCHAR,
        updated_at TIMESTAMP NOT NULL DEFAULT now()
    );
    CREATE SEQUENCE label_event_id_seq START 1;
    CREATE TABLE label_events (
        id BIGINT PRIMARY KEY DEFAULT nextval('label_event_id_seq'),
        generation_id BIGINT NOT NULL,
        status VARCHAR NOT NULL,
        edited_response VARCHAR,
        changed_at TIMESTAMP NOT NULL DEFAULT now()
    );
    CREATE SEQUENCE judgment_id_seq START 1;
    CREATE TABLE judgments (
        id BIGINT PRIMARY KEY DEFAULT nextval('judgment_id_seq'),
        generation_id BIGINT NOT NULL,
        judge_model VARCHAR NOT NULL,
        score DOUBLE,
        rationale VARCHAR,
        raw_output VARCHAR,
        created_at TIMESTAMP NOT NULL DEFAULT now()
    );
    CREATE TABLE embeddings (
        item_kind VARCHAR NOT NULL,
        item_id BIGINT NOT NULL,
        model VARCHAR NOT NULL,
        content_hash VARCHAR NOT NULL,
        vector FLOAT[] NOT NULL,
        PRIMARY KEY (item_kind, item_id, model)
    );
    CREATE SEQUENCE run_id_seq START 1;
    CREATE TABLE runs (
        id BIGINT PRIMARY KEY DEFAULT nextval('run_id_seq'),
        kind VARCHAR NOT NULL,
        config VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        started_at TIMESTAMP NOT NULL DEFAULT now(),
        finished_at TIMESTAMP,
        metrics VARCHAR,
        run_dir VARCHAR,
        pid INTEGER,
        error VARCHAR
    );
    """,
    # 2: reasons and undo for labels (dedupe/filters mark rows with why), logprobs, checkable tasks,
    # pairwise judgments.
    """
    ALTER TABLE labels ADD COLUMN reason VARCHAR;
    ALTER TABLE label_events ADD COLUMN reason VARCHAR;
    ALTER TABLE label_events ADD COLUMN batch_id BIGINT;
    ALTER TABLE label_events ADD COLUMN previous_status VARCHAR;
    ALTER TABLE label_events ADD COLUMN previous_reason VARCHAR;
    CREATE SEQUENCE label_batch_seq START 1;
    ALTER TABLE generations ADD COLUMN logprobs VARCHAR;
    ALTER TABLE tasks ADD COLUMN expected VARCHAR;
    ALTER TABLE judgments ADD COLUMN kind VARCHAR DEFAULT 'score';
    ALTER TABLE judgments ADD COLUMN other_generation_id BIGINT;
    ALTER TABLE judgments ADD COLUMN request_key VARCHAR;
    """,
    # 3: knowledge elicitation — a per-call ledger (every planned teacher call with its state, attempts,
    # error, usage, cost and raw output), an editable price table, the method of each generation, and
    # usage/cost per run.
    """
    CREATE TABLE ledger (
        request_key VARCHAR PRIMARY KEY,
        run_id BIGINT,
        method VARCHAR NOT NULL,
        stage VARCHAR,
        task_id BIGINT,
        generation_id BIGINT,
        other_generation_id BIGINT,
        endpoint VARCHAR NOT NULL,
        model VARCHAR NOT NULL,
        messages VARCHAR NOT NULL,
        params VARCHAR NOT NULL,
        sample_index INTEGER NOT NULL DEFAULT 0,
        context VARCHAR,
        state VARCHAR NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        error VARCHAR,
        raw_output VARCHAR,
        result VARCHAR,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        cost_usd DOUBLE,
        latency_s DOUBLE,
        created_at TIMESTAMP NOT NULL DEFAULT now(),
        updated_at TIMESTAMP NOT NULL DEFAULT now()
    );
    CREATE TABLE prices (
        model VARCHAR PRIMARY KEY,
        input_usd_per_mtok DOUBLE NOT NULL,
        output_usd_per_mtok DOUBLE NOT NULL,
        updated_at TIMESTAMP NOT NULL DEFAULT now()
    );
    INSERT INTO prices (model, input_usd_per_mtok, output_usd_per_mtok) VALUES ('smollm2-135m-instruct', 0, 0);
    ALTER TABLE generations ADD COLUMN method VARCHAR DEFAULT 'label';
    ALTER TABLE runs ADD COLUMN prompt_tokens BIGINT;
    ALTER TABLE runs ADD COLUMN completion_tokens BIGINT;
    ALTER TABLE runs ADD COLUMN cost_usd DOUBLE;
    """,
    # 4: distillation — the rows each training run was given (id + content hash), so two runs' data
    # can be diffed and a run reproduced even after the run dir is gone.
    """
    CREATE TABLE run_rows (
        run_id BIGINT NOT NULL,
        row_id VARCHAR NOT NULL,
        content_hash VARCHAR NOT NULL,
        PRIMARY KEY (run_id, row_id)
    );
    """,
    # 5: the survey's further skills (issue 16) — documents cut into chunks, each question task grounded
    # in one; edits of any turn of a conversation (the original kept, as for answers).
    """
    CREATE SEQUENCE chunk_id_seq START 1;
    CREATE TABLE chunks (
        id BIGINT PRIMARY KEY DEFAULT nextval('chunk_id_seq'),
        document VARCHAR NOT NULL,
        document_hash VARCHAR NOT NULL,
        ordinal INTEGER NOT NULL,
        text VARCHAR NOT NULL,
        char_start INTEGER,
        char_end INTEGER,
        created_at TIMESTAMP NOT NULL DEFAULT now()
    );
    ALTER TABLE tasks ADD COLUMN chunk_id BIGINT;
    ALTER TABLE labels ADD COLUMN edited_messages VARCHAR;
    ALTER TABLE label_events ADD COLUMN edited_messages VARCHAR;
    """,
    # 6: tool use (issue 16) — tool sets (an OpenAI `tools` list), the tool set a task is to be answered with,
    # and each answer's tool calls with their validity against the schemas.
    """
    CREATE SEQUENCE toolset_id_seq START 1;
    CREATE TABLE toolsets (
        id BIGINT PRIMARY KEY DEFAULT nextval('toolset_id_seq'),
        name VARCHAR NOT NULL,
        tools VARCHAR NOT NULL,
        tools_hash VARCHAR NOT NULL UNIQUE,
        created_at TIMESTAMP NOT NULL DEFAULT now()
    );
    ALTER TABLE tasks ADD COLUMN toolset_id BIGINT;
    ALTER TABLE generations ADD COLUMN tool_calls VARCHAR;
    """,
    # 7: scale (issue 17) — which member of a teacher farm (or which Batch API batch) answered each call, and
    # the batches submitted to the OpenAI Batch API with their own states, so that a restart resumes polling
    # the same batch and never submits twice.
    """
    ALTER TABLE ledger ADD COLUMN answered_by VARCHAR;
    ALTER TABLE ledger ADD COLUMN batch_id BIGINT;
    ALTER TABLE generations ADD COLUMN answered_by VARCHAR;
    CREATE SEQUENCE batch_id_seq START 1;
    CREATE TABLE batches (
        id BIGINT PRIMARY KEY DEFAULT nextval('batch_id_seq'),
        run_id BIGINT,
        endpoint VARCHAR NOT NULL,
        model VARCHAR NOT NULL,
        method VARCHAR NOT NULL,
        stage VARCHAR,
        state VARCHAR NOT NULL DEFAULT 'planned',
        remote_id VARCHAR,
        input_file_id VARCHAR,
        output_file_id VARCHAR,
        error_file_id VARCHAR,
        request_count INTEGER NOT NULL,
        ok_count INTEGER,
        failed_count INTEGER,
        discount DOUBLE NOT NULL DEFAULT 0.5,
        input_path VARCHAR,
        error VARCHAR,
        created_at TIMESTAMP NOT NULL DEFAULT now(),
        updated_at TIMESTAMP NOT NULL DEFAULT now()
    );
    """,
]
