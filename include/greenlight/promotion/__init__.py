"""QA -> prod promotion: config, plan/execute engine, contract gates, current pointers, consumer halt,
QA preconditions, exact rollback and progress reporting. No Airflow imports."""
