"""Monitoring logic: drift (Evidently), live quality, serving health, event de-duplication.

Plain functions used by the operators, sensors and triggers of the monitoring stage.
"""
