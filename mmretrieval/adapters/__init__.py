"""Retrievers for agent frameworks over an `Engine`, one module each (optional extras): `langchain`
(a LangChain `BaseRetriever`), `llama_index` (a LlamaIndex `BaseRetriever`). Each turns hits (or an agent's
notes) into the framework's documents; the engine does the searching."""
