"""A dozen labelled sentences that a tiny Tokenizer -> HashingTF -> LogisticRegression fits perfectly."""

TRAIN = [
    ("i love this so much", 1.0),
    ("what a great happy day", 1.0),
    ("wonderful amazing love it", 1.0),
    ("so happy and glad", 1.0),
    ("great fun love", 1.0),
    ("best day ever happy", 1.0),
    ("i hate this so much", 0.0),
    ("what a terrible sad day", 0.0),
    ("awful horrible hate it", 0.0),
    ("so sad and angry", 0.0),
    ("bad boring hate", 0.0),
    ("worst day ever sad", 0.0),
]
