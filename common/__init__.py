"""The SmartGym service kernel: settings, database, events, security, HTTP and observability.

Every service package builds on these modules and on nothing from another service.
"""
