"""Stateful fake Zigna and Ziik servers (ASGI apps) and a way to serve them on loopback.

```python
from zigziik.testing import FakeZigna, serve

fake = FakeZigna(orders=3, picture_size=2_000)
with serve(fake.app) as origin:
    ...  # ZignaClient(DEMO_API_KEY, base_url=origin + "/v2")
```
"""

from ._base import FakeServer, RequestRecord
from ._faults import FaultMiddleware, Faults, InjectedDisconnect, InjectedFault
from ._files import GeneratedFile, make_jpeg, make_pdf, make_swf
from ._serve import serve
from ._zigna import DEMO_API_KEY, EMPTY_DATE, HOSTILE_NAMES, ORDER_STATUSES, FakeZigna
from ._ziik import FakeZiik

__all__ = [
    "DEMO_API_KEY",
    "EMPTY_DATE",
    "HOSTILE_NAMES",
    "ORDER_STATUSES",
    "FakeServer",
    "FakeZigna",
    "FakeZiik",
    "FaultMiddleware",
    "Faults",
    "GeneratedFile",
    "InjectedDisconnect",
    "InjectedFault",
    "RequestRecord",
    "make_jpeg",
    "make_pdf",
    "make_swf",
    "serve",
]
