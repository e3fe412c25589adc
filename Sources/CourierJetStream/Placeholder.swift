// CourierJetStream
