"""Click-through-rate prediction on heterogeneous graphs: HIN builders (amazon_cdr, synthetic with ground
truth), neighbourhood sampling, GMT (graph-masked transformer), an FM baseline, AUC/LogLoss. CLI runners in
:mod:`.runners`."""
