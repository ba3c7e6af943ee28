"""Celery task names and queues: the one place producers and workers agree on them."""

QUEUE_INGEST = "autoglm.ingest"
QUEUE_MAINTENANCE = "autoglm.maintenance"
ALL_QUEUES = (QUEUE_INGEST, QUEUE_MAINTENANCE)

PROCESS_DOCUMENT = "autoglm.ingest.process_document"
COMPACT_COLLECTION = "autoglm.ingest.compact_collection"
