// CourierCloudEvents
