"""Markup that runs if it is ever parsed as HTML: each mark sets ``window.__pwned`` or
adds an element whose id starts with ``amqpwn`` (see ``hostile_app.py``)."""

#: Breaks out of a quoted attribute, then runs (build ids go into data-* attributes).
BUILD = '"><img src=x id=amqpwn-build onerror=window.__pwned="build">'
#: A numeric field named with markup (a signal buffer, a History column and its title).
KEY = "<img src=x id=amqpwn-key onerror=window.__pwned='key'>"
#: String values: a script (inert through innerHTML, but must not become an element).
NOTE = "<script id=amqpwn-note>window.__pwned='note'</script><b id=amqpwn-bold>bold</b>"
MACHINE = "<svg id=amqpwn-machine onload=window.__pwned='machine'></svg>"
