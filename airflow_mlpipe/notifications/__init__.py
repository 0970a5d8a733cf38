"""Airflow notifiers of the provider (``on_failure_callback=...`` / ``on_success_callback=...``)."""
