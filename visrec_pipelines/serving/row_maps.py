"""One item, three row numbers: its row in the catalogue (items.csv), in the champion's item list
and in the visual index. These arrays translate between them, once per state."""
import numpy as np

from .catalogue import ItemCatalogue
from .champion import Champion
from .similar import SimilarItems


class RowMaps:
    def __init__(self, catalogue: ItemCatalogue, champion: Champion | None, similar: SimilarItems | None):
        cat = catalogue
        self.index_to_cat = np.full(len(similar) if similar else 0, -1, dtype=np.intp)
        self.index_to_cat[cat.vec_row[cat.vec_row >= 0]] = np.flatnonzero(cat.vec_row >= 0)
        self.champ_to_cat = self.cat_to_champ = self.unknown_bias = None
        self.popularity = np.zeros(len(cat), dtype=np.float32)   # the champion's, per catalogue row
        if champion is not None:
            self.champ_to_cat = np.asarray([cat.row.get(i, -1) for i in champion.bundle.item_ids.tolist()],
                                           dtype=np.intp)
            self.cat_to_champ = np.full(len(cat), -1, dtype=np.intp)
            known = self.champ_to_cat >= 0
            self.cat_to_champ[self.champ_to_cat[known]] = np.flatnonzero(known)
            # items the champion knows but the catalogue does not (no title, no image) never show
            self.unknown_bias = np.where(known, 0.0, -np.inf).astype(np.float32)
            self.popularity[self.champ_to_cat[known]] = champion.popularity[known]
