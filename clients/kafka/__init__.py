"""Kafka with raw aiokafka: consumers and producers (`log`), reading topics to their end and
sending records back (`records`), publishing events (`publisher`), and keeping a record cronbus
cannot use (`keeper`)."""
