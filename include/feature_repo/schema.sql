-- Offline side of greenlight's feature repo (PostgreSQL). Applied by greenlight.features.ensure_schema();
-- every statement is idempotent, so it is safe to run on each deploy.
--
-- ohlcv_5m is the source of truth: one row per symbol and 5-minute bar (ts = bar open time, UTC).
-- The two views compute the features Feast materializes; their event_timestamp is the bar's ts.

CREATE TABLE IF NOT EXISTS ohlcv_5m (
    symbol     text             NOT NULL,
    ts         timestamptz      NOT NULL,
    open       double precision NOT NULL,
    high       double precision NOT NULL,
    low        double precision NOT NULL,
    close      double precision NOT NULL CHECK (close > 0),
    volume     double precision NOT NULL CHECK (volume >= 0),
    loaded_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, ts)
);

CREATE INDEX IF NOT EXISTS ohlcv_5m_ts_idx ON ohlcv_5m (ts);

-- Technical features. Window functions run over consecutive rows of each symbol (a missing bar is
-- skipped, not filled). Values need a full lookback, else they are NULL:
--   ret_1          log return over one bar                         (1 previous bar)
--   ret_12         log return over 12 bars (1 hour)                (12 previous bars)
--   rsi_9          Cutler's RSI over the last 9 changes: 100 - 100 / (1 + avg gain / avg loss);
--                  100 when there was no loss                      (9 previous bars)
--   volatility_12  sample std-dev of the last 12 one-bar log returns (12 previous bars)
CREATE OR REPLACE VIEW feat_technical_5m AS
WITH changes AS (
    SELECT symbol,
           ts,
           close,
           close - lag(close) OVER w                 AS chg,
           ln(close / lag(close) OVER w)              AS ret_1,
           ln(close / lag(close, 12) OVER w)          AS ret_12
    FROM ohlcv_5m
    WINDOW w AS (PARTITION BY symbol ORDER BY ts)
)
SELECT symbol,
       ts AS event_timestamp,
       ret_1,
       ret_12,
       CASE WHEN count(chg) OVER w9 = 9 THEN
           CASE WHEN sum(greatest(-chg, 0)) OVER w9 = 0 THEN 100.0
                ELSE 100.0 - 100.0 / (1.0 + sum(greatest(chg, 0)) OVER w9 / sum(greatest(-chg, 0)) OVER w9)
           END
       END AS rsi_9,
       CASE WHEN count(ret_1) OVER w12 = 12 THEN stddev_samp(ret_1) OVER w12 END AS volatility_12
FROM changes
WINDOW w9  AS (PARTITION BY symbol ORDER BY ts ROWS BETWEEN 8 PRECEDING AND CURRENT ROW),
       w12 AS (PARTITION BY symbol ORDER BY ts ROWS BETWEEN 11 PRECEDING AND CURRENT ROW);

-- Bar features: the bar itself plus a one-hour volume-weighted average price.
--   close, volume  the bar's close and volume
--   range_pct      (high - low) / close
--   vwap_12        sum(close * volume) / sum(volume) over the last 12 bars (NULL if no volume)
CREATE OR REPLACE VIEW feat_bar_5m AS
SELECT symbol,
       ts AS event_timestamp,
       close,
       volume,
       (high - low) / close AS range_pct,
       sum(close * volume) OVER w12 / nullif(sum(volume) OVER w12, 0) AS vwap_12
FROM ohlcv_5m
WINDOW w12 AS (PARTITION BY symbol ORDER BY ts ROWS BETWEEN 11 PRECEDING AND CURRENT ROW);
