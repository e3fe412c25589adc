@_exported public import CourierCore
@_exported public import CourierIngest

#if NATS
@_exported public import CourierJetStream
#endif
#if Encryption
@_exported public import CourierCrypto
#endif
#if CloudEvents
@_exported public import CourierCloudEvents
#endif
#if Routing
@_exported public import CourierRouting
#endif
