"""The worker: the Celery task (:mod:`.task`), one run of it (:mod:`.runner`), endpoint
health (:mod:`.health`), and the promoter thread with its bootsteps (:mod:`.promoter`,
:mod:`.steps`)."""
