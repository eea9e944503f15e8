"""Airflow plugin: a listener that writes a task manifest for every task of every DAG tagged
``greenlight`` (see ``include/greenlight/dagsupport/taskmanifest.py`` and docs/manifests.md).

Airflow 3 calls task-instance listeners inside the task process (the Task SDK runner, and the
in-process runner of ``dag.test()``): ``on_task_instance_running`` after the templates are
rendered, ``on_task_instance_success`` / ``on_task_instance_failed`` (also for a try that will be
retried, with the state ``up_for_retry``) and ``on_task_instance_skipped`` (a task that skipped
itself) after the task ran. Tasks the scheduler skips or marks upstream_failed never run: no
hook fires and they get no manifest. The API server calls the same hooks
with an ORM ``TaskInstance`` when a user changes a state by hand; those are ignored.

This module is imported by every Airflow component that loads plugins (scheduler, API server,
DAG processor, workers): it imports nothing but the plugin base class and the hook marker, and
loads the library only when a hook fires. Every hook catches its own errors, so a manifest that
cannot be written never fails a task.
"""

from __future__ import annotations

import logging

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger("greenlight.listener")


def _record(task_instance, event: str, error=None) -> None:
    if type(task_instance).__name__ != "RuntimeTaskInstance":
        return  # a state change made through the API server (ORM TaskInstance): not recorded
    try:
        from greenlight.dagsupport.taskmanifest import record

        record(task_instance, event, error)
    except Exception:  # noqa: BLE001 - a listener must never break the task it observes
        log.warning("greenlight task manifest listener failed (%s)", event, exc_info=True)


class GreenlightTaskManifestListener:
    """pluggy hook implementations (the names and arguments are Airflow's listener spec)."""

    @hookimpl
    def on_task_instance_running(self, previous_state, task_instance):
        _record(task_instance, "running")

    @hookimpl
    def on_task_instance_success(self, previous_state, task_instance):
        _record(task_instance, "success")

    @hookimpl
    def on_task_instance_failed(self, previous_state, task_instance, error):
        _record(task_instance, "failed", error)

    @hookimpl
    def on_task_instance_skipped(self, previous_state, task_instance):
        _record(task_instance, "skipped")


class GreenlightListenerPlugin(AirflowPlugin):
    name = "greenlight_listener"
    listeners = [GreenlightTaskManifestListener()]
