"""The re-ID runtime behind the commands: ``trainer`` (training loop, optimizer, schedule, resume),
``evaluator`` (features, ranking, metrics files), ``exporter`` (ONNX + parity check) and
``benchmark`` (throughput, parameters and compute). Each has ``main(args)`` for its command; none
imports a command module (reid_models.train, .evaluate, .export, .bench, __main__)."""
