"""Real-time streaming for AM-QADF: transport, incremental voxel updates, buffers,
pipelines and storage.

:class:`StreamingClient` is the spec's facade; the pieces it runs are public too, for
pipelines of another shape (the fleet worker): :class:`ConsumerLoop` with a
:class:`BatchHandler`, :class:`DeadLetterWriter`, :class:`BatchWriter`,
:class:`OffsetTracker` and :class:`ProcessorRegistry`.

>>> from am_qadf.streaming import StreamingClient, StreamingConfig
>>> client = StreamingClient(StreamingConfig.embedded())
>>> client.process_stream_batch([{"value": 1.0}]).processed_count
1
"""

from .batch_writer import BatchWriter
from .buffer_manager import BufferManager
from .consumer_loop import BatchHandler, ConsumerLoop
from .dead_letter_writer import DeadLetterWriter
from .history_store import HistoryResult
from .incremental_processor import IncrementalProcessor
from .kafka_consumer import KafkaConsumer
from .kafka_producer import KafkaProducer
from .memory_broker import MemoryBroker, get_broker
from .message_validation import MessageValidator, Split
from .offset_tracker import OffsetTracker
from .processor_registry import ProcessorRegistry
from .stream_processor import StreamProcessor
from .stream_storage import PreparedBatch, SpoolFullError, StreamStorage
from .streaming_client import StreamingClient
from .streaming_config import StreamingConfig
from .streaming_result import StreamingResult
from .timestamps import to_utc

__all__ = [
    "BatchHandler",
    "BatchWriter",
    "BufferManager",
    "ConsumerLoop",
    "DeadLetterWriter",
    "HistoryResult",
    "IncrementalProcessor",
    "KafkaConsumer",
    "KafkaProducer",
    "MemoryBroker",
    "MessageValidator",
    "OffsetTracker",
    "PreparedBatch",
    "ProcessorRegistry",
    "Split",
    "SpoolFullError",
    "StreamProcessor",
    "StreamStorage",
    "StreamingClient",
    "StreamingConfig",
    "StreamingResult",
    "get_broker",
    "to_utc",
]
