"""Real-time streaming for AM-QADF: transport, incremental voxel updates, buffers,
pipelines and storage.

>>> from am_qadf.streaming import StreamingClient, StreamingConfig
>>> client = StreamingClient(StreamingConfig.embedded())
>>> client.process_stream_batch([{"value": 1.0}]).processed_count
1
"""

from .buffer_manager import BufferManager
from .history_store import HistoryResult
from .incremental_processor import IncrementalProcessor
from .kafka_consumer import KafkaConsumer
from .kafka_producer import KafkaProducer
from .memory_broker import MemoryBroker, get_broker
from .message_validation import MessageValidator
from .stream_processor import StreamProcessor
from .stream_storage import PreparedBatch, SpoolFullError, StreamStorage
from .streaming_client import StreamingClient
from .streaming_config import StreamingConfig
from .streaming_result import StreamingResult
from .timestamps import to_utc

__all__ = [
    "BufferManager",
    "HistoryResult",
    "IncrementalProcessor",
    "KafkaConsumer",
    "KafkaProducer",
    "MemoryBroker",
    "MessageValidator",
    "PreparedBatch",
    "SpoolFullError",
    "StreamProcessor",
    "StreamStorage",
    "StreamingClient",
    "StreamingConfig",
    "StreamingResult",
    "get_broker",
    "to_utc",
]
