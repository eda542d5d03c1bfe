-- payments group: a double-entry ledger. Every settled payment moves money as one balanced pair of
-- ledger rows (a DEBIT of one wallet, a CREDIT of another, same amount); wallet balances are the
-- running totals of those rows and are updated in the same transaction.
--
-- Read side (`GET /v1/wallets/{id}`): `wallets` row by wallet_id (kind 'USER'), its recent
-- `ledger_entries` by (wallet_id, entry_id DESC), and `payments` for the details of each entry.

-- wallets: one row per account.
--   wallet_id        the wallet's uuid (text), or `external:<CURRENCY>` for the outside world
--   kind             'USER': a user's wallet, never negative (CHECK below);
--                    'EXTERNAL': money entering (TOP_UP, debited here) or leaving (PAYOUT, credited
--                    here) the platform, one per currency, so the sum of all balances per currency
--                    stays 0
--   user_id          owner of a USER wallet (uuid text); NULL for EXTERNAL
--   currency         ISO 4217 code, fixed when the wallet is created by its first credit
--   balance_minor    current balance in minor units (e.g. cents)
--   version          incremented on every balance change (wallet.updated carries it)
--   last_payment_id  payment of the latest change
CREATE TABLE wallets (
    wallet_id       TEXT        PRIMARY KEY,
    kind            TEXT        NOT NULL CHECK (kind IN ('USER', 'EXTERNAL')),
    user_id         TEXT,
    currency        TEXT        NOT NULL,
    balance_minor   BIGINT      NOT NULL DEFAULT 0,
    version         BIGINT      NOT NULL DEFAULT 0,
    last_payment_id TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT wallets_owner CHECK ((kind = 'USER') = (user_id IS NOT NULL)),
    CONSTRAINT wallets_balance_not_negative CHECK (kind = 'EXTERNAL' OR balance_minor >= 0)
);
CREATE INDEX wallets_user ON wallets (user_id) WHERE user_id IS NOT NULL;

-- payments: one row per payment id, written once when the payment is decided (completed or
-- failed); the primary key makes a payment id take effect at most once whatever event carries it.
--   event_id        the payment.initiated event that decided it (its emitted outcome ids derive
--                   from this id)
--   status          'COMPLETED' (a ledger pair exists) or 'FAILED' (no money moved)
--   kind            TIP | PURCHASE | SUBSCRIPTION | PAYOUT | TOP_UP | OTHER
--   wallet_id       payer's wallet (debited), or for TOP_UP the wallet credited
--   payee_wallet_id wallet credited; NULL for TOP_UP and PAYOUT
--   failure_reason  PaymentFailureReason symbol when FAILED (e.g. INSUFFICIENT_FUNDS)
--   decided_at      when the ledger decided; the completedAt / failedAt of the outcome event
CREATE TABLE payments (
    payment_id      TEXT        PRIMARY KEY,
    event_id        TEXT        NOT NULL,
    status          TEXT        NOT NULL CHECK (status IN ('COMPLETED', 'FAILED')),
    kind            TEXT        NOT NULL,
    wallet_id       TEXT        NOT NULL,
    payee_wallet_id TEXT,
    payer_id        TEXT        NOT NULL,
    payee_id        TEXT,
    amount_minor    BIGINT      NOT NULL,
    currency        TEXT        NOT NULL,
    reference       TEXT,
    note            TEXT,
    failure_reason  TEXT,
    error_message   TEXT,
    initiated_at    TIMESTAMPTZ NOT NULL,
    decided_at      TIMESTAMPTZ NOT NULL,
    CONSTRAINT payments_failure_reason CHECK ((status = 'FAILED') = (failure_reason IS NOT NULL))
);
CREATE INDEX payments_wallet ON payments (wallet_id, decided_at);
CREATE INDEX payments_payee_wallet ON payments (payee_wallet_id, decided_at)
    WHERE payee_wallet_id IS NOT NULL;

-- ledger_entries: append-only. A completed payment has exactly one DEBIT and one CREDIT row of
-- the same amount (UNIQUE (payment_id, direction) plus the deferred balance check below).
--   balance_after_minor, wallet_version: the wallet's balance and version right after this entry
CREATE TABLE ledger_entries (
    entry_id            BIGSERIAL   PRIMARY KEY,
    payment_id          TEXT        NOT NULL REFERENCES payments (payment_id),
    wallet_id           TEXT        NOT NULL REFERENCES wallets (wallet_id),
    direction           TEXT        NOT NULL CHECK (direction IN ('DEBIT', 'CREDIT')),
    amount_minor        BIGINT      NOT NULL CHECK (amount_minor > 0),
    currency            TEXT        NOT NULL,
    balance_after_minor BIGINT      NOT NULL,
    wallet_version      BIGINT      NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT ledger_entries_one_pair_per_payment UNIQUE (payment_id, direction)
);
CREATE INDEX ledger_entries_wallet ON ledger_entries (wallet_id, entry_id);

-- At commit, the entries of a payment must balance (debits = credits).
CREATE FUNCTION ledger_entries_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    debits  BIGINT;
    credits BIGINT;
BEGIN
    SELECT COALESCE(SUM(amount_minor) FILTER (WHERE direction = 'DEBIT'), 0),
           COALESCE(SUM(amount_minor) FILTER (WHERE direction = 'CREDIT'), 0)
      INTO debits, credits
      FROM ledger_entries
     WHERE payment_id = NEW.payment_id;
    IF debits <> credits THEN
        RAISE EXCEPTION 'ledger entries of payment % do not balance (debits %, credits %)',
            NEW.payment_id, debits, credits;
    END IF;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_balanced();

CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries is append-only';
END;
$$;
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();
